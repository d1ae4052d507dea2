"""kong.yml loading: one bad file per error kind (tests/fixtures/bad), and what a good file resolves to."""

from __future__ import annotations

from pathlib import Path

import pytest
from kong_emulator.config.declarative import BUNDLED_PLUGINS, generate_id, load_declarative
from kong_emulator.config.entities import PluginInfo
from kong_emulator.config.errors import ConfigError

BAD = sorted((Path(__file__).parent.parent / "fixtures" / "bad").glob("*.yml"))
RBAC = PluginInfo(
    name="sv-rbac",
    version="1.0.0",
    priority=950,
    phases=("access",),
    schema={
        "name": "sv-rbac",
        "fields": [
            {
                "config": {
                    "type": "record",
                    "fields": [
                        {
                            "required_role": {
                                "type": "string",
                                "required": True,
                                "one_of": ["viewer", "editor", "admin"],
                            }
                        },
                        {"max_depth": {"type": "integer", "default": 3, "between": [1, 10]}},
                    ],
                }
            }
        ],
    },
)


def load(text_or_path, enabled=frozenset({"bundled", "sv-rbac"})):
    return load_declarative(text_or_path, {"sv-rbac": RBAC}, set(enabled), set(BUNDLED_PLUGINS))


def expected_message(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: <message>'"
    return first.removeprefix("# expect: ")


def test_there_is_one_bad_file_per_error_kind():
    assert len(BAD) >= 25


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_file_is_refused_with_its_exact_message(path):
    with pytest.raises(ConfigError) as err:
        load(str(path))
    assert str(err.value) == expected_message(path)


GOOD = """
_format_version: "3.0"
_comment: storyverse
services:
- name: story-api
  url: https://story-api.storyverse.svc/v1
  _comment: the stories backend
  routes:
  - name: stories
    paths: ["/v1/stories", "~/v1/stories/(?<story_id>[0-9a-f-]{36})$"]
    methods: [GET, POST]
    strip_path: false
    plugins:
    - name: sv-rbac
      config: {required_role: editor}
- name: auth
  host: auth
  port: 5000
routes:
- name: login
  service: auth
  paths: ["/v1/auth/login"]
consumers:
- username: storyteller-app
  keyauth_credentials: [{key: dev-key-1}]
  plugins:
  - name: sv-rbac
    config: {required_role: viewer}
upstreams:
- name: story-api.storyverse.svc
  targets: [{target: 10.0.0.1:8080}, {target: 10.0.0.2, weight: 0}]
targets:
- target: 10.0.0.3:8080
  upstream: story-api.storyverse.svc
plugins:
- name: sv-rbac
  config: {required_role: admin, max_depth: 5}
- name: sv-rbac
  route: login
  consumer: storyteller-app
  config: {required_role: admin}
- name: key-auth
  service: auth
"""


@pytest.fixture
def good():
    return load(GOOD)


def test_service_url_sets_protocol_host_port_and_path(good):
    story = next(s for s in good.services.values() if s.name == "story-api")
    assert (story.protocol, story.host, story.port, story.path) == ("https", "story-api.storyverse.svc", 443, "/v1")
    auth = next(s for s in good.services.values() if s.name == "auth")
    assert (auth.protocol, auth.port, auth.path, auth.retries, auth.read_timeout) == ("http", 5000, None, 5, 60000)


def test_nested_and_top_level_routes_reference_their_service(good):
    by_name = {r.name: r for r in good.routes}
    assert [r.name for r in good.routes] == ["stories", "login"]
    assert good.services[by_name["stories"].service_id].name == "story-api"
    assert good.services[by_name["login"].service_id].name == "auth"
    assert by_name["stories"].strip_path is False and by_name["login"].strip_path is True
    assert by_name["login"].protocols == ["http", "https"] and by_name["login"].https_redirect_status_code == 426


def test_plugins_are_scoped_and_their_config_normalised(good):
    scopes = {(p.route_id is not None, p.service_id is not None, p.consumer_id is not None): p for p in good.plugins}
    assert set(scopes) == {(True, False, False), (False, False, True), (False, False, False), (True, False, True)}
    assert scopes[(True, False, False)].config == {"required_role": "editor", "max_depth": 3}
    assert scopes[(False, False, False)].config == {"required_role": "admin", "max_depth": 5}
    assert all(p.protocols == ["grpc", "grpcs", "http", "https"] and p.enabled for p in good.plugins)


def test_bundled_lua_plugins_are_reported_not_dropped_silently(good):
    assert good.unsupported_plugins == ["key-auth"]
    assert all(p.name != "key-auth" for p in good.plugins)
    assert good.ignored_entities == ["consumers[0].keyauth_credentials[0]"]


def test_targets_get_kongs_default_port_and_weight(good):
    upstream = good.upstreams["story-api.storyverse.svc"]
    assert [(t.target, t.weight) for t in upstream.targets] == [
        ("10.0.0.1:8080", 100),
        ("10.0.0.2:8000", 0),
        ("10.0.0.3:8080", 100),
    ]
    passive = upstream.healthchecks["passive"]
    assert passive["unhealthy"] == {
        "http_statuses": [429, 500, 503],
        "tcp_failures": 0,
        "timeouts": 0,
        "http_failures": 0,
    }


def test_ids_are_generated_deterministically_and_kept_when_given():
    first, second = load(GOOD), load(GOOD)
    assert list(first.services) == list(second.services)
    assert [p.id for p in first.plugins] == [p.id for p in second.plugins]
    assert next(iter(first.services)) == generate_id("services", "story-api")
    given = load('_format_version: "3.0"\nservices:\n- {id: 1b0b6a8e-7f3c-4d1e-9a51-6b6f6e672d65, host: x}\n')
    assert list(given.services) == ["1b0b6a8e-7f3c-4d1e-9a51-6b6f6e672d65"]


def test_references_by_id_work_like_references_by_name():
    text = (
        '_format_version: "3.0"\nservices:\n- {id: 1b0b6a8e-7f3c-4d1e-9a51-6b6f6e672d65, name: s, host: x}\n'
        "routes:\n- {name: r, paths: [/], service: {id: 1b0b6a8e-7f3c-4d1e-9a51-6b6f6e672d65}}\n"
    )
    assert load(text).routes[0].service_id == "1b0b6a8e-7f3c-4d1e-9a51-6b6f6e672d65"


def test_format_2_1_route_paths_are_migrated_like_kong_3():
    text = '_format_version: "2.1"\nservices:\n- host: x\n  routes:\n  - paths: ["/v1/stories/\\\\d+$", "/plain"]\n'
    assert load(text).routes[0].paths == ["~/v1/stories/\\d+$", "/plain"]


def test_a_plugin_not_enabled_in_kong_conf_is_refused_even_if_bundled():
    with pytest.raises(ConfigError, match="plugin 'key-auth' not enabled"):
        load('_format_version: "3.0"\nplugins: [{name: key-auth}]\n', enabled={"sv-rbac"})


def test_loads_from_a_path(tmp_path):
    path = tmp_path / "kong.yml"
    path.write_text(GOOD)
    assert len(load(path).routes) == 2 and len(load(str(path)).routes) == 2


def test_a_json_file_is_accepted():
    assert load('{"_format_version": "3.0", "services": [{"host": "x"}]}').services
