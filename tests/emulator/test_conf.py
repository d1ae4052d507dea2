"""kong.conf + KONG_* environment parsing (Kong 3.9 conf_loader rules)."""

from __future__ import annotations

import pytest
from kong_emulator.config.conf import ListenConf, load_kong_conf, parse_conf_text, strip_comment
from kong_emulator.config.errors import ConfigError

NO_BIN = {"exists": lambda path: False}


def conf_file(tmp_path, text: str) -> str:
    path = tmp_path / "kong.conf"
    path.write_text(text)
    return str(path)


def test_defaults_are_kongs():
    conf = load_kong_conf(None, {}, **NO_BIN)
    assert conf.plugins == ["bundled"]
    assert conf.prefix == "/usr/local/kong"
    assert conf.router_flavor == "traditional_compatible"
    assert conf.headers == ["server_tokens", "latency_tokens", "X-Kong-Request-Id"]
    assert conf.enabled_headers == {
        "server", "via", "x-kong-proxy-latency", "x-kong-response-latency", "x-kong-upstream-latency",
        "x-kong-request-id",
    }  # fmt: skip
    assert conf.proxy_listen == [
        ListenConf("0.0.0.0", 8000, ("reuseport", "backlog=16384")),
        ListenConf("0.0.0.0", 8443, ("http2", "ssl", "reuseport", "backlog=16384")),
    ]
    assert conf.trusted_ips == [] and conf.real_ip_header == "X-Real-IP" and conf.declarative_config is None
    assert conf.emulator_reply_timeout == 60 and conf.emulator_strict is False and conf.pluginservers == []
    assert conf.client_max_body_size == 0 and conf.nginx_worker_processes >= 1


def test_comments_and_escaped_hashes_follow_kongs_infer_value():
    parsed = parse_conf_text("# a comment\n  plugins = bundled,sv-jwt   # trailing\nsecret = a\\#b\n\nnot a setting\n")
    assert parsed == {"plugins": "bundled,sv-jwt", "secret": "a#b"}
    assert strip_comment("abc#def") == "ab"  # Kong's gsub eats the character before the '#'


def test_environment_overrides_the_file(tmp_path):
    path = conf_file(tmp_path, "router_flavor = traditional\nplugins = bundled\nemulator_strict = on\n")
    conf = load_kong_conf(path, {"KONG_ROUTER_FLAVOR": "expressions", "KONG_PLUGINS": "Bundled, SV-JWT #x"}, **NO_BIN)
    assert conf.router_flavor == "expressions"
    assert conf.plugins == ["bundled", "sv-jwt #x"]  # environment values are not comment-stripped
    assert conf.emulator_strict is True
    assert conf.raw["router_flavor"] == "expressions"


def test_pluginservers_read_their_three_keys_with_dash_to_underscore(tmp_path):
    path = conf_file(
        tmp_path,
        "prefix = /kong_prefix/\npluginserver_names = sv-jwt, SV-Quota\n"
        "pluginserver_sv_jwt_socket = /kong_prefix/sv-jwt.sock\n"
        "pluginserver_sv_jwt_start_cmd = /opt/venv/bin/python3 /opt/sv/sv-jwt.py\n"
        "pluginserver_sv_jwt_query_cmd = /opt/venv/bin/python3 /opt/sv/sv-jwt.py --dump\n"
        "pluginserver_sv_quota_query_cmd = /opt/sv/sv-quota.py --dump\n",
    )
    jwt, quota = load_kong_conf(path, {}, **NO_BIN).pluginservers
    assert (jwt.name, jwt.socket, jwt.start_cmd) == (
        "sv-jwt",
        "/kong_prefix/sv-jwt.sock",
        "/opt/venv/bin/python3 /opt/sv/sv-jwt.py",
    )
    assert jwt.query_cmd.endswith("--dump")
    assert (quota.name, quota.socket, quota.start_cmd) == ("sv-quota", "/kong_prefix/sv-quota.socket", None)


def test_pluginserver_without_query_cmd_is_an_error_in_3_9():
    with pytest.raises(ConfigError) as err:
        load_kong_conf(None, {"KONG_PLUGINSERVER_NAMES": "sv-jwt"}, **NO_BIN)
    assert str(err.value) == (
        "in kong.conf: field 'pluginserver_sv_jwt_query_cmd': query_command undefined for pluginserver sv-jwt"
    )


def test_pluginserver_defaults_to_usr_local_bin_when_it_exists():
    conf = load_kong_conf(
        None, {"KONG_PLUGINSERVER_NAMES": "go-hello"}, exists=lambda p: p == "/usr/local/bin/go-hello"
    )
    (server,) = conf.pluginservers
    assert (server.start_cmd, server.query_cmd) == ("/usr/local/bin/go-hello", "/usr/local/bin/go-hello -dump")


def test_proxy_listen_syntax():
    conf = load_kong_conf(None, {"KONG_PROXY_LISTEN": "127.0.0.1:9000, [::1]:9443 ssl http2"}, **NO_BIN)
    assert conf.proxy_listen == [ListenConf("127.0.0.1", 9000, ()), ListenConf("::1", 9443, ("ssl", "http2"))]
    assert conf.proxy_listen[1].ssl
    assert load_kong_conf(None, {"KONG_PROXY_LISTEN": "off"}, **NO_BIN).proxy_listen == []


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KONG_PROXY_LISTEN": "8000"}, "in kong.conf: proxy_listen must be of form: [off] | <ip>:<port>"),
        ({"KONG_PROXY_LISTEN": "0.0.0.0:8000 sssl"}, "in kong.conf: proxy_listen must be of form"),
        (
            {"KONG_ROUTER_FLAVOR": "fast"},
            "in kong.conf: router_flavor has an invalid value: 'fast' "
            "(traditional, traditional_compatible, expressions)",
        ),
        ({"KONG_EMULATOR_STRICT": "yes"}, "in kong.conf: emulator_strict is not a boolean: 'yes'"),
        ({"KONG_EMULATOR_REPLY_TIMEOUT": "soon"}, "in kong.conf: emulator_reply_timeout is not a number: 'soon'"),
        ({"KONG_HEADERS": "server_tokens, X-Powered-By"}, "in kong.conf: headers: invalid entry 'X-Powered-By'"),
    ],
)
def test_invalid_values_are_refused_with_kongs_wording(env, message):
    with pytest.raises(ConfigError) as err:
        load_kong_conf(None, env, **NO_BIN)
    assert str(err.value).startswith(message)


def test_headers_off_and_plugins_off():
    conf = load_kong_conf(None, {"KONG_HEADERS": "off", "KONG_PLUGINS": "off"}, **NO_BIN)
    assert conf.enabled_headers == frozenset() and conf.plugins == []


def test_sizes_workers_and_trusted_ips():
    env = {
        "KONG_NGINX_HTTP_CLIENT_MAX_BODY_SIZE": "10m",
        "KONG_NGINX_WORKER_PROCESSES": "2",
        "KONG_TRUSTED_IPS": "10.0.0.0/8, 127.0.0.1",
        "KONG_DECLARATIVE_CONFIG": "/kong_dbless/kong.yml",
    }
    conf = load_kong_conf(None, env, **NO_BIN)
    assert conf.client_max_body_size == 10 * 1024 * 1024 and conf.nginx_worker_processes == 2
    assert conf.trusted_ips == ["10.0.0.0/8", "127.0.0.1"] and conf.declarative_config == "/kong_dbless/kong.yml"
