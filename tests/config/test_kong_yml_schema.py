"""kong.yml passes Kong's declarative validation as the emulator implements it, against the plugins' own schemas.

Beyond Kong: every config of our plugins also passes the plugin's own `parse_config` (the cross-field rules Kong never
sees, which would otherwise fail at the first request). Every bundled plugin kong.yml names runs in the emulator too
(cors, prometheus, proxy-cache and file-log natively; sv-edge, our Lua plugin, in LuaJIT with its schema.lua);
the cors config is also checked against Kong's cors field names.
"""

from __future__ import annotations

import pytest
import yaml
from kong_emulator.config.errors import ConfigError
from kong_yml_support import EXPECTED_UNSUPPORTED, KONG_YML, OUR_PLUGINS, load, plugin_infos
from storyverse_plugins.expand.schema import parse_config as parse_expand
from storyverse_plugins.jwt_auth.schema import parse_config as parse_jwt
from storyverse_plugins.quota.schema import parse_config as parse_quota
from storyverse_plugins.rbac.schema import parse_config as parse_rbac
from storyverse_plugins.request_id.schema import parse_config as parse_request_id

PARSERS = {
    "sv-jwt": parse_jwt,
    "sv-rbac": parse_rbac,
    "sv-quota": parse_quota,
    "sv-quota-log": parse_quota,  # the same schema: a route's sv-quota-log repeats its sv-quota config
    "sv-request-id": parse_request_id,
    "sv-expand": parse_expand,
}
# kong/plugins/cors/schema.lua (Kong 3.9 OSS): the config fields
CORS_FIELDS = {
    "origins", "headers", "exposed_headers", "methods", "max_age", "credentials", "private_network",
    "preflight_continue", "allow_origin_absent",
}  # fmt: skip


@pytest.fixture(scope="module")
def config():
    return load(KONG_YML)


def test_the_plugin_infos_come_from_our_plugin_servers():
    infos = plugin_infos()
    assert set(OUR_PLUGINS) <= set(infos)
    assert [infos[n].priority for n in OUR_PLUGINS] == [100001, 1450, 950, 910, 909, 810]


def test_kong_yml_loads_with_only_the_listed_unsupported_plugins(config):
    assert config.format_version == "3.0"
    assert config.unsupported_plugins == EXPECTED_UNSUPPORTED
    assert config.ignored_entities == []


def test_every_configured_plugin_is_ours_or_bundled_and_known(config):
    names = {p.name for p in config.plugins}
    assert names == {*OUR_PLUGINS, "sv-edge", "cors", "prometheus", "proxy-cache", "file-log"}


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_config_of_our_plugins_passes_the_plugins_own_parse_config(config, name):
    configs = [p for p in config.plugins if p.name == name]
    assert configs, f"{name} is not configured"
    for plugin in configs:
        PARSERS[name](dict(plugin.config))  # raises ValueError on a cross-field rule


def test_cors_config_uses_only_kong_cors_fields():
    raw = yaml.safe_load(KONG_YML.read_text())
    cors = [p for p in raw["plugins"] if p["name"] == "cors"]
    assert len(cors) == 1
    assert set(cors[0]["config"]) <= CORS_FIELDS
    assert "OPTIONS" in cors[0]["config"]["methods"]
    assert cors[0]["config"]["credentials"] is False  # bearer tokens, no cookies: no credentialed CORS


def test_the_validator_is_not_a_rubber_stamp():
    bad_rbac = KONG_YML.read_text().replace("roles: [parent, child]", "roles: [parent, toddler]", 1)
    with pytest.raises(ConfigError, match=r"toddler|expected one of"):
        load(bad_rbac)
    bad_regex = KONG_YML.read_text().replace("(?<story_id>[0-9]+)$", "(?<story_id>[0-9]+$", 1)
    with pytest.raises(ConfigError, match="regex"):
        load(bad_regex)
