"""kong.yml and docs/api.md's route table are generated (`sv-gateway-config render`): they must be up to date, and the
generator's settings (a deployment's hosts, API versions) must be checked before they reach Kong."""

from __future__ import annotations

import pytest
import yaml
from kong_yml_support import KONG_YML, REPO, generator, load
from storyverse_gateway_config import cli

# Today's ~45 routes render to ~60 KB of configuration; the ceiling leaves room for more routes, never for
# code or documents again (kong.yml once carried 865 KB of pasted Lua and embedded docs).
MAX_KONG_YML_BYTES = 150 * 1024


def test_kong_yml_and_the_route_table_are_up_to_date():
    assert cli.main(["check"]) == 0, "run: .venv/bin/sv-gateway-config render"


def test_kong_yml_is_configuration_of_bounded_size():
    assert KONG_YML.stat().st_size < MAX_KONG_YML_BYTES


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def test_kong_yml_holds_no_lua_and_no_embedded_documents():
    raw = yaml.safe_load(KONG_YML.read_text())
    names = {p["name"] for p in raw["plugins"]} | {
        p["name"] for svc in raw["services"] for rt in svc["routes"] for p in rt.get("plugins", [])
    }
    assert not names & {"pre-function", "post-function"}  # the edge glue is the sv-edge plugin
    assert not any(p.get("config", {}).get("custom_fields_by_lua") for p in raw["plugins"])
    for text in _strings(raw):
        assert "\n" not in text, f"a multi-line value (code or a document?): {text[:80]!r}"
        assert len(text) < 2000, f"a long value (an embedded document?): {text[:80]!r}"
        assert "kong.response" not in text and "function(" not in text


def test_a_deployment_renders_its_own_hosts(tmp_path):
    settings = tmp_path / "prod.yaml"
    settings.write_text(
        yaml.safe_dump(
            {
                "services": {"stories": "http://stories.storyverse.svc:8080", "auth": "http://sv-auth:80"},
                "jwt": {"jwks_url": "http://sv-auth:80/.well-known/jwks.json", "issuer": "https://api.storyverse.app"},
                "redis": {"redis_host": "redis.example", "redis_ssl": True, "redis_password": "{vault://env/sv-redis}"},
                "cors_origins": ["https://app.storyverse.app"],
            }
        )
    )
    out = tmp_path / "kong.prod.yml"
    assert cli.main(["render", "--settings", str(settings), "-o", str(out)]) == 0
    assert cli.main(["check", "--settings", str(settings), "-o", str(out)]) == 0
    config = load(out)
    hosts = {s.name: (s.host, s.port) for s in config.services.values()}
    assert hosts["stories"] == ("stories.storyverse.svc", 8080) and hosts["auth"] == ("sv-auth", 80)
    assert hosts["universes"] == ("127.0.0.1", 9103)  # a setting not given keeps its local value
    for plugin in config.plugins:
        if plugin.name == "sv-jwt":
            assert plugin.config["issuer"] == "https://api.storyverse.app"
            assert plugin.config["audience"] == "storyverse-api"
        if plugin.name in ("sv-jwt", "sv-quota", "sv-quota-log"):
            assert (plugin.config["redis_host"], plugin.config["redis_ssl"]) == ("redis.example", True)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"versions": [{"name": "v1", "status": "current"}, {"name": "v2", "status": "current"}]}, "exactly one"),
        ({"versions": [{"name": "v1", "status": "deprecated"}, {"name": "v2", "status": "current"}]}, "needs"),
        ({"versions": [{"name": "v1", "status": "old"}, {"name": "v2", "status": "current"}]}, "unknown status"),
        ({"upstream": {}}, "unknown setting 'upstream'"),
        ({"redis": {"redis_port": "six"}}, "redis.redis_port"),
        ({"redis": {"redis_hots": "x"}}, "redis.redis_hots: unknown setting"),
        ({"services": {"auth": "ftp://sv-auth"}}, "not an http"),
        ({"limit_scale": 0}, "limit_scale"),
    ],
)
def test_bad_settings_are_refused(overrides, message):
    with pytest.raises(SystemExit, match=message):
        generator().load_settings(overrides=overrides)


def test_the_production_example_validates_like_kong(tmp_path):
    """Upstreams with health checks, https services with tls_verify and ca_certificates, the -read services: Kong's
    schema (as the emulator transcribes it from Kong 3.9.1) accepts all of it."""
    example = REPO / "gateway-config" / "examples" / "production.yaml"
    out = tmp_path / "kong.prod.yml"
    assert cli.main(["render", "--settings", str(example), "-o", str(out)]) == 0
    config = load(out)
    assert {u.name for u in config.upstreams.values()} >= {"auth.upstream", "stories.upstream"}
    services = {s.name: s for s in config.services.values()}
    assert services["stories-read"].retries == 2 and services["stories"].retries == 0
    assert services["auth"].protocol == "https" and services["auth"].host == "auth.upstream"
