"""sv-jwt config: the declared schema (descriptions, defaults) and parse_config's cross-field rules."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import subprocess
import sys

import pytest
from storyverse_plugins.jwt_auth.schema import Config, Schema, parse_config
from test_jwt_kit import plugin_config

ENTRY = pathlib.Path(__file__).parents[2] / "kong-plugins" / "plugins" / "sv-jwt.py"
URL = "http://auth:8000/.well-known/jwks.json"


def fields() -> dict[str, dict]:
    return {name: spec for item in Schema for name, spec in item.items()}


def test_every_field_has_a_description_and_a_type():
    for name, spec in fields().items():
        assert spec.get("description"), name
        assert spec["type"] in ("string", "integer", "number", "boolean", "array"), name


def test_schema_defaults_match_the_config_defaults():
    for name, spec in fields().items():
        if "default" in spec and name not in ("algorithms", "leeway", "strip_header_prefixes") and "redis" not in name:
            assert getattr(Config, name) == spec["default"], name


def test_kong_nulls_take_the_defaults():
    raw = {name: None for name in fields()} | {"jwks_url": URL, "issuer": "iss", "audience": "aud"}
    raw |= {"__plugin_id": "x", "__seq__": 3, "route_id": None, "__key__": "k"}
    cfg = parse_config(raw)
    assert cfg.verify.leeway == 30 and cfg.verify.algorithms == {"RS256", "ES256", "EdDSA"}
    assert cfg.strip_header_prefixes == ("x-sv-",) and cfg.anonymous is False and cfg.denylist is True
    assert cfg.redis.host == "127.0.0.1" and cfg.redis.timeout_ms == 100
    assert cfg.denylist_cache_ms == 500


def test_the_kit_config_parses():
    cfg = parse_config(plugin_config(URL, algorithms=["ES256"], strip_header_prefixes=["X-Internal-", "X-Sv-"]))
    assert cfg.verify.algorithms == {"ES256"} and cfg.strip_header_prefixes == ("x-internal-", "x-sv-")


@pytest.mark.parametrize(
    "overrides",
    [
        {"jwks_url": "file:///etc/passwd"},
        {"jwks_url": "ftp://auth/jwks.json"},
        {"jwks_url": "http:///jwks.json"},
        {"jwks_url": "http://user:pw@auth/jwks.json"},
        {"jwks_url": None},
        {"issuer": None},
        {"audience": ""},
        {"algorithms": ["HS256"]},
        {"algorithms": ["none"]},
        {"algorithms": []},
        {"leeway": 120},
        {"leeway": -1},
        {"jwks_refresh_min_interval": 600, "jwks_cache_ttl": 300},
        {"strip_header_prefixes": [""]},
        {"strip_header_prefixes": ["Auth"]},
        {"redis_host": "", "denylist": True},
        {"redis_timeout_ms": 500},
        {"realm": 'story"verse'},
        {"denylist_cache_ms": 1001},
        {"denylist_cache_ms": -1},
    ],
)
def test_bad_configs_are_refused(overrides):
    with pytest.raises(ValueError):
        parse_config(plugin_config(URL) | overrides)


def test_entry_file_exports_the_plugin():
    spec = importlib.util.spec_from_file_location("sv_jwt_entry", ENTRY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.priority == 1450 and module.version.count(".") == 2 and module.Schema is Schema


def test_entry_file_dumps_plugin_info_for_kong():
    out = subprocess.run([sys.executable, str(ENTRY), "--dump"], capture_output=True, text=True, timeout=60, check=True)
    (info,) = json.loads(out.stdout)
    assert info["Name"] == "sv-jwt" and info["Priority"] == 1450 and info["Phases"] == ["access"]
    config_fields = info["Schema"]["fields"][0]["config"]["fields"]
    assert {next(iter(f)) for f in config_fields} == set(fields())
