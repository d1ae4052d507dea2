"""sv-expand config: Kong schema DSL (forwarded as config.fields) and the parsed, validated Config.

Kong checks types and ranges; the cross-field rules (unique names, safe service URLs, timeout within the budget...)
live in `parse_config`, which `Plugin.__init__` calls once per configuration: a bad config raises, StartInstance
fails and Kong answers 500 on the route.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from storyverse_contracts.identity import IDENTITY_HEADERS, REQUEST_ID_HEADER

from storyverse_plugins.common.schema_fields import schema_field

ID_PLACEHOLDER = "{id}"
DEFAULT_FORWARD = (*IDENTITY_HEADERS.values(), REQUEST_ID_HEADER)

_NAME = re.compile(r"\A[a-z][a-z0-9_]{0,31}\Z")
_FIELD = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
_HEADER = re.compile(r"\A[A-Za-z0-9-]{1,64}\Z")


_EXPANSION = {
    "type": "record",
    "description": "One thing a client may expand: where the story names it, and the service that serves it.",
    "fields": (
        schema_field(
            "name",
            "The value clients put in the expand query argument, e.g. characters (lower case, digits, underscore).",
            "string",
            required=True,
        ),
        schema_field(
            "id_field",
            "The story field that holds the id (a string or integer) or a list of ids, e.g. character_ids.",
            "string",
            required=True,
        ),
        schema_field(
            "url",
            "The service URL of one resource: `{id}` is replaced by the (validated) id, or, without `{id}`, the id "
            "is appended as the last path segment. Only these configured URLs are ever fetched (no SSRF).",
            "string",
            required=True,
        ),
        schema_field(
            "target_field",
            "The story field that receives the fetched resource (an object, or a list for a list of ids); "
            "defaults to name.",
            "string",
        ),
    ),
}

Schema = (
    schema_field(
        "expansions",
        "What clients may expand on this route; any other value in the expand argument is refused with a 400.",
        "array",
        required=True,
        len_min=1,
        elements=_EXPANSION,
    ),
    schema_field(
        "query_arg", "The query argument that lists the expansions, comma-separated.", "string", default="expand"
    ),
    schema_field(
        "envelope_field",
        "The field of a JSON response that holds the record (the story's and each fetched resource's), e.g. item; "
        "unset: the whole body is the record.",
        "string",
    ),
    schema_field(
        "markers_field",
        "The story field that reports each expansion's outcome: {status: ok|partial|failed, errors: {id: reason}}.",
        "string",
        default="_expanded",
    ),
    schema_field(
        "budget_ms",
        "Total time all fetches of one request may take; whatever is not back by then is marked timeout.",
        "integer",
        default=300,
        between=[10, 5000],
    ),
    schema_field(
        "timeout_ms",
        "Connect and read timeout of each fetch (never more than what is left of budget_ms).",
        "integer",
        default=250,
        between=[10, 5000],
    ),
    schema_field(
        "max_ids",
        "At most this many ids are fetched per expansion; the rest are marked over_limit.",
        "integer",
        default=25,
        between=[1, 100],
    ),
    schema_field(
        "max_concurrency",
        "At most this many fetches of one request are in flight at once.",
        "integer",
        default=8,
        between=[1, 32],
    ),
    schema_field(
        "max_body_bytes",
        "Largest story body the plugin composes, and largest body accepted from each fetch (larger: error).",
        "integer",
        default=262144,
        between=[1024, 8388608],
    ),
    schema_field(
        "forward_headers",
        "Request headers copied onto every fetch, as the story's upstream received them (sv-jwt's identity "
        "headers and the request id: the services are per user).",
        "array",
        default=list(DEFAULT_FORWARD),
        elements={"type": "string"},
    ),
)


@dataclass(frozen=True)
class Expansion:
    name: str
    id_field: str
    url: str
    target_field: str

    def url_for(self, resource_id: str) -> str:
        """The URL of one resource; `resource_id` must already be validated (core.valid_id)."""
        if ID_PLACEHOLDER in self.url:
            return self.url.replace(ID_PLACEHOLDER, resource_id)
        return self.url.rstrip("/") + "/" + resource_id


@dataclass(frozen=True)
class Config:
    expansions: tuple[Expansion, ...]
    query_arg: str = "expand"
    envelope_field: str | None = None
    markers_field: str = "_expanded"
    budget_ms: int = 300
    timeout_ms: int = 250
    max_ids: int = 25
    max_concurrency: int = 8
    max_body_bytes: int = 262144
    forward_headers: tuple[str, ...] = DEFAULT_FORWARD

    def expansion(self, name: str) -> Expansion | None:
        return next((e for e in self.expansions if e.name == name), None)


def _get(raw: dict[str, Any], name: str, default: Any) -> Any:
    value = raw.get(name)
    return default if value is None else value


def _match(value: Any, pattern: re.Pattern, where: str, what: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise ValueError(f"{where} must be {what}, got {value!r}")
    return value


def _int(raw: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = _get(raw, name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer between {low} and {high}, got {value!r}")
    return value


def check_url(url: Any, where: str) -> str:
    """An absolute http(s) URL without credentials or fragment; `{id}` never in the host (the id must not choose
    where the gateway connects); a query only together with `{id}`."""
    if not isinstance(url, str) or any(c.isspace() for c in url):
        raise ValueError(f"{where} must be an absolute http(s) URL, got {url!r}")
    filled = url.replace(ID_PLACEHOLDER, "0")
    parts = urlsplit(filled)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{where} must be an absolute http(s) URL, got {url!r}")
    if "@" in parts.netloc or parts.fragment or "{" in filled or "}" in filled:
        raise ValueError(f"{where}: no credentials, fragment or placeholder other than {ID_PLACEHOLDER}: {url!r}")
    if url.count(ID_PLACEHOLDER) > 1 or ID_PLACEHOLDER in urlsplit(url).netloc:
        raise ValueError(f"{where}: {ID_PLACEHOLDER} may appear once, in the path or query only: {url!r}")
    if parts.query and ID_PLACEHOLDER not in url:
        raise ValueError(f"{where}: a URL with a query needs an {ID_PLACEHOLDER} placeholder: {url!r}")
    return url


def _expansions(raw: Any, markers_field: str) -> tuple[Expansion, ...]:
    if not isinstance(raw, list | tuple) or not raw:
        raise ValueError("expansions must list at least one expansion")
    out: list[Expansion] = []
    for i, item in enumerate(raw):
        where = f"expansions[{i}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where} must be a record with name, id_field and url")
        name = _match(item.get("name"), _NAME, where + ".name", "lower case letters, digits or _")
        id_field = _match(item.get("id_field"), _FIELD, where + ".id_field", "a field name")
        target = _match(_get(item, "target_field", name), _FIELD, where + ".target_field", "a field name")
        if target in (id_field, markers_field):
            raise ValueError(f"{where}.target_field {target!r} would overwrite the ids or the markers")
        for other in out:
            if name == other.name or target == other.target_field:
                raise ValueError(f"{where}: name {name!r} or target_field {target!r} is used twice")
        out.append(Expansion(name, id_field, check_url(item.get("url"), where + ".url"), target))
    return tuple(out)


def parse_config(raw: dict[str, Any]) -> Config:
    """Config from Kong's config dict (None means unset; Kong's own __keys are ignored); raises ValueError."""
    markers = _match(_get(raw, "markers_field", "_expanded"), _FIELD, "markers_field", "a field name")
    envelope = raw.get("envelope_field")
    if envelope is not None:
        _match(envelope, _FIELD, "envelope_field", "a field name")
    budget = _int(raw, "budget_ms", 300, 10, 5000)
    timeout = _int(raw, "timeout_ms", 250, 10, 5000)
    if timeout > budget:
        raise ValueError(f"timeout_ms ({timeout}) must not exceed budget_ms ({budget})")
    forward = _get(raw, "forward_headers", list(DEFAULT_FORWARD))
    if not isinstance(forward, list | tuple):
        raise ValueError("forward_headers must be an array of header names")
    headers = tuple(_match(h, _HEADER, "forward_headers", "a header name") for h in forward)
    return Config(
        expansions=_expansions(raw.get("expansions"), markers),
        query_arg=_match(_get(raw, "query_arg", "expand"), _FIELD, "query_arg", "an argument name"),
        envelope_field=envelope,
        markers_field=markers,
        budget_ms=budget,
        timeout_ms=timeout,
        max_ids=_int(raw, "max_ids", 25, 1, 100),
        max_concurrency=_int(raw, "max_concurrency", 8, 1, 32),
        max_body_bytes=_int(raw, "max_body_bytes", 262144, 1024, 8388608),
        forward_headers=headers,
    )
