"""sv-request-id config, declared in Kong's schema DSL (the plugin server forwards it as config.fields)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Schema = (
    {
        "header_name": {
            "description": "The header that carries the request id, on the upstream request and on the response.",
            "type": "string",
            "default": "X-Request-Id",
            "required": True,
        }
    },
    {
        "trust_client": {
            "description": "Keep an id the client sent when it is well-formed (otherwise always mint a new one).",
            "type": "boolean",
            "default": False,
            "required": True,
        }
    },
    {
        "echo_downstream": {
            "description": "Return the id to the client in the same header.",
            "type": "boolean",
            "default": True,
            "required": True,
        }
    },
)


@dataclass(frozen=True)
class Config:
    header_name: str = "X-Request-Id"
    trust_client: bool = False
    echo_downstream: bool = True


def parse_config(raw: dict[str, Any]) -> Config:
    """Kong sends every field (None when unset); fall back to the defaults above for None."""
    defaults = Config()
    return Config(
        header_name=raw.get("header_name") or defaults.header_name,
        trust_client=bool(raw.get("trust_client") if raw.get("trust_client") is not None else defaults.trust_client),
        echo_downstream=bool(
            raw.get("echo_downstream") if raw.get("echo_downstream") is not None else defaults.echo_downstream
        ),
    )
