"""Kong 3.x core entity schemas in the schema DSL (fields, defaults, validators), plus their entity checks.

Transcribed from Kong/kong `kong/db/schema/entities/{services,routes,routes_subschemas,consumers,upstreams,targets,
plugins}.lua` and `typedefs.lua`; `BUNDLED_PLUGINS` is `kong/constants.lua` of Kong 3.9 (OSS).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from kong_emulator.config.errors import ConfigError
from kong_emulator.router.traditional import normalize_path, regex_path_error

BUNDLED_PLUGINS = (
    "jwt",
    "acl",
    "correlation-id",
    "cors",
    "oauth2",
    "tcp-log",
    "udp-log",
    "file-log",
    "http-log",
    "key-auth",
    "hmac-auth",
    "basic-auth",
    "ip-restriction",
    "request-transformer",
    "response-transformer",
    "request-size-limiting",
    "rate-limiting",
    "response-ratelimiting",
    "syslog",
    "loggly",
    "datadog",
    "ldap-auth",
    "statsd",
    "bot-detection",
    "aws-lambda",
    "request-termination",
    "prometheus",
    "proxy-cache",
    "session",
    "acme",
    "grpc-gateway",
    "grpc-web",
    "pre-function",
    "post-function",
    "azure-functions",
    "zipkin",
    "opentelemetry",
    "ai-proxy",
    "ai-prompt-decorator",
    "ai-prompt-template",
    "ai-prompt-guard",
    "ai-request-transformer",
    "ai-response-transformer",
    "standard-webhooks",
    "redirect",
)
PROTOCOLS = ("grpc", "grpcs", "http", "https", "tcp", "tls", "tls_passthrough", "udp")
HTTP_PROTOCOLS = ("grpc", "grpcs", "http", "https")
EXCLUSIVE_PROTOCOLS = (("http", "https"), ("tcp", "tls", "udp"), ("tls_passthrough",), ("grpc", "grpcs"))
IGNORED_COLLECTIONS = frozenset(
    {
        "certificates",
        "snis",
        "vaults",
        "keys",
        "key_sets",
        "consumer_groups",
        "filter_chains",
        "keyauth_credentials",
        "basicauth_credentials",
        "jwt_secrets",
        "acls",
        "hmacauth_credentials",
        "oauth2_credentials",
        "mtls_auth_credentials",
        "parameters",
    }
)
FOREIGN = {"routes": ("service",), "targets": ("upstream",), "plugins": ("route", "service", "consumer")}
_HOSTNAME = re.compile(
    r"^[A-Za-z0-9_]([A-Za-z0-9_\-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_\-]*[A-Za-z0-9_])?)*\.?$"
)
_PATH_CHARS = re.compile(r"^/[\w.\-~/%:@!$&'()*+,;=]*$", re.A)


def _host_error(host: str, allow_port: bool) -> str | None:
    """`utils.normalize_ip` + `validate_host*`: an IP or a hostname, with a port only when allowed."""
    name, port = host, None
    if re.fullmatch(r"\[[0-9a-fA-F:.]+\](:\d+)?|[^:]+:\d+", host):
        name, _, port = host.rpartition(":")
    elif host.count(":") == 1:
        return "invalid port number"
    if port is not None and not allow_port:
        return "must not have a port"
    if port is not None and int(port) > 65535:
        return "invalid port number"
    try:
        ipaddress.ip_address(name.strip("[]"))
        return None
    except ValueError:
        pass
    return None if _HOSTNAME.match(name) else f"invalid value: {host}"


def _path_error(path: str) -> str | None:
    """`typedefs.path` custom validator: RFC 3986 characters, proper percent-encoding."""
    if not _PATH_CHARS.match(path):
        return f"invalid path: '{path}' (characters outside of the reserved list of RFC 3986 found)"
    return _percent_error(path)


def _percent_error(path: str) -> str | None:
    raw = re.sub(r"%[0-9a-fA-F]{2}", "___", path)
    if "%" in raw:
        i = raw.index("%")
        return f"invalid url-encoded value: '{raw[i : i + 3]}'"
    return None


def _router_path_check(flavor: str):
    def check(path: str) -> str | None:
        """`validate_path_with_regexes`: percent-encoding, then normalisation (prefix) or a regex dry run."""
        err = _percent_error(path)
        if err:
            return err
        if not path.startswith("~"):
            normalized = normalize_path(path, True)
            return None if normalized == path else f"non-normalized path, consider use '{normalized}' instead"
        return regex_path_error(path, flavor)

    return check


def _header_name_error(name: str) -> str | None:
    if re.fullmatch(r"[A-Za-z0-9_-]+", name):
        return None
    return f"bad header name '{name}', allowed characters are A-Z, a-z, 0-9, '_', and '-'"


def _utf8_name_error(name: str) -> str | None:
    if re.fullmatch(r"[\w.\-~]+", name) or re.fullmatch(r"[A-Za-z0-9.\-_~\u0080-\U0010ffff]+", name):
        return None
    return f"invalid value '{name}': the only accepted ascii characters are alphanumerics or ., -, _, and ~"


def _wildcard_host_error(host: str) -> str | None:
    return _host_error(host.replace("*", "abc"), allow_port=True)


UUID = {"type": "string", "uuid": True}
TIMESTAMP = {"type": "integer"}
TAGS = {"type": "set", "elements": {"type": "string"}}
PORT = {"type": "integer", "between": [0, 65535]}
TIMEOUT = {"type": "integer", "between": [1, 2**31 - 2], "default": 60000}
HTTP_STATUSES = {"type": "array", "elements": {"type": "integer", "between": [100, 999]}}
ROUTER_PATH = {
    "type": "string",
    "match_any": {"patterns": ["^/", "^~/"], "err": "should start with: / (fixed path) or ~/ (regex path)"},
    "match_none": [{"pattern": "//", "err": "must not have empty segments"}],
}
HOSTS = {
    "type": "array",
    "elements": {
        "type": "string",
        "match_all": [{"pattern": "^[^*]*%*?[^*]*$", "err": "invalid wildcard: must have at most one wildcard"}],
        "match_any": {
            "patterns": ["^%*%.", "%.%*$", "^[^*]*$"],
            "err": "invalid wildcard: must be placed at leftmost or rightmost label",
        },
        "custom_validator": _wildcard_host_error,
    },
}
ROUTE_HEADERS = {
    "type": "map",
    "keys": {
        "type": "string",
        "custom_validator": _header_name_error,
        "match_none": [
            {
                "pattern": "^[Hh][Oo][Ss][Tt]$",
                "err": "cannot contain 'host' header, which must be specified in the 'hosts' attribute",
            }
        ],
    },
    "values": {"type": "array", "elements": {"type": "string"}},
}
SOURCES = {
    "type": "set",
    "elements": {"type": "record", "fields": [{"ip": {"type": "string"}}, {"port": PORT}]},
}


def route_fields(flavor: str) -> list[dict[str, Any]]:
    """routes.lua (traditional / traditional_compatible)."""
    return [
        {"id": UUID},
        {"created_at": TIMESTAMP},
        {"updated_at": TIMESTAMP},
        {"name": {"type": "string", "custom_validator": _utf8_name_error}},
        {
            "protocols": {
                "type": "set",
                "len_min": 1,
                "required": True,
                "default": ["http", "https"],
                "elements": {"type": "string", "one_of": list(PROTOCOLS)},
            }
        },
        {"methods": {"type": "set", "elements": {"type": "string", "match": "^%u+$"}}},
        {"hosts": HOSTS},
        {"paths": {"type": "array", "elements": {**ROUTER_PATH, "custom_validator": _router_path_check(flavor)}}},
        {"headers": ROUTE_HEADERS},
        {
            "https_redirect_status_code": {
                "type": "integer",
                "one_of": [426, 301, 302, 307, 308],
                "default": 426,
                "required": True,
            }
        },
        {"regex_priority": {"type": "integer", "default": 0}},
        {"strip_path": {"type": "boolean", "required": True, "default": True}},
        {"path_handling": {"type": "string", "default": "v0", "one_of": ["v0", "v1"]}},
        {"preserve_host": {"type": "boolean", "required": True, "default": False}},
        {"request_buffering": {"type": "boolean", "required": True, "default": True}},
        {"response_buffering": {"type": "boolean", "required": True, "default": True}},
        {"snis": {"type": "set", "elements": {"type": "string"}}},
        {"sources": SOURCES},
        {"destinations": SOURCES},
        {"tags": TAGS},
    ]


SERVICE_FIELDS = [
    {"id": UUID},
    {"created_at": TIMESTAMP},
    {"updated_at": TIMESTAMP},
    {"name": {"type": "string", "custom_validator": _utf8_name_error}},
    {"retries": {"type": "integer", "default": 5, "between": [0, 32767]}},
    {"protocol": {"type": "string", "required": True, "default": "http", "one_of": [*PROTOCOLS, "ws", "wss"]}},
    {"host": {"type": "string", "required": True, "custom_validator": lambda h: _host_error(h, allow_port=False)}},
    {"port": {**PORT, "required": True, "default": 80}},
    {
        "path": {
            "type": "string",
            "starts_with": "/",
            "custom_validator": _path_error,
            "match_none": [{"pattern": "//", "err": "must not have empty segments"}],
        }
    },
    {"connect_timeout": TIMEOUT},
    {"write_timeout": TIMEOUT},
    {"read_timeout": TIMEOUT},
    {"tags": TAGS},
    {"client_certificate": {"type": "record", "fields": [{"id": UUID}]}},
    {"tls_verify": {"type": "boolean"}},
    {"tls_verify_depth": {"type": "integer", "between": [0, 64]}},
    {"ca_certificates": {"type": "array", "elements": UUID}},
    {"enabled": {"type": "boolean", "required": True, "default": True}},
]
CONSUMER_FIELDS = [
    {"id": UUID},
    {"created_at": TIMESTAMP},
    {"updated_at": TIMESTAMP},
    {"username": {"type": "string"}},
    {"custom_id": {"type": "string"}},
    {"tags": TAGS},
]


def _counters(statuses: list[int], *names: str) -> dict[str, Any]:
    fields = [{"http_statuses": {**HTTP_STATUSES, "default": statuses}}]
    fields += [{n: {"type": "integer", "between": [0, 255], "default": 0}} for n in names]
    return {"type": "record", "fields": fields}


def _interval(record: dict[str, Any]) -> dict[str, Any]:
    return {
        **record,
        "fields": [{"interval": {"type": "number", "between": [0, 65535], "default": 0}}, *record["fields"]],
    }


HEALTHY_STATUSES = [200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 306, 307, 308]
HEALTHCHECKS = {
    "type": "record",
    "fields": [
        {
            "active": {
                "type": "record",
                "fields": [
                    {
                        "type": {
                            "type": "string",
                            "one_of": ["tcp", "http", "https", "grpc", "grpcs"],
                            "default": "http",
                        }
                    },
                    {"timeout": {"type": "number", "between": [0, 65535], "default": 1}},
                    {"concurrency": {"type": "integer", "between": [1, 2**31 - 1], "default": 10}},
                    {"http_path": {"type": "string", "default": "/"}},
                    {"https_sni": {"type": "string"}},
                    {"https_verify_certificate": {"type": "boolean", "default": True}},
                    {
                        "headers": {
                            "type": "map",
                            "keys": {"type": "string"},
                            "values": {"type": "array", "elements": {"type": "string"}},
                        }
                    },
                    {"healthy": _interval(_counters([200, 302], "successes"))},
                    {
                        "unhealthy": _interval(
                            _counters(
                                [429, 404, 500, 501, 502, 503, 504, 505], "tcp_failures", "timeouts", "http_failures"
                            )
                        )
                    },
                ],
            }
        },
        {
            "passive": {
                "type": "record",
                "fields": [
                    {
                        "type": {
                            "type": "string",
                            "one_of": ["tcp", "http", "https", "grpc", "grpcs"],
                            "default": "http",
                        }
                    },
                    {"healthy": _counters(HEALTHY_STATUSES, "successes")},
                    {"unhealthy": _counters([429, 500, 503], "tcp_failures", "timeouts", "http_failures")},
                ],
            }
        },
        {"threshold": {"type": "number", "between": [0, 100], "default": 0}},
    ],
}
UPSTREAM_FIELDS = [
    {"id": UUID},
    {"created_at": TIMESTAMP},
    {"updated_at": TIMESTAMP},
    {
        "name": {
            "type": "string",
            "required": True,
            "custom_validator": lambda n: (
                _host_error(n, allow_port=False) and f"Invalid name ('{n}'); must be in syntax: hostname"
            ),
        }
    },
    {
        "algorithm": {
            "type": "string",
            "default": "round-robin",
            "one_of": ["consistent-hashing", "least-connections", "round-robin", "latency"],
        }
    },
    {"hash_on": {"type": "string", "default": "none"}},
    {"hash_fallback": {"type": "string", "default": "none"}},
    {"hash_on_header": {"type": "string"}},
    {"hash_fallback_header": {"type": "string"}},
    {"hash_on_cookie": {"type": "string"}},
    {"hash_on_cookie_path": {"type": "string", "default": "/"}},
    {"hash_on_query_arg": {"type": "string"}},
    {"hash_fallback_query_arg": {"type": "string"}},
    {"hash_on_uri_capture": {"type": "string"}},
    {"hash_fallback_uri_capture": {"type": "string"}},
    {"slots": {"type": "integer", "default": 10000, "between": [10, 2**16]}},
    {"healthchecks": HEALTHCHECKS},
    {"tags": TAGS},
    {"host_header": {"type": "string", "custom_validator": lambda h: _host_error(h, allow_port=False)}},
    {"client_certificate": {"type": "record", "fields": [{"id": UUID}]}},
    {"use_srv_name": {"type": "boolean", "default": False}},
]
TARGET_FIELDS = [
    {"id": UUID},
    {"created_at": TIMESTAMP},
    {"updated_at": TIMESTAMP},
    {"target": {"type": "string", "required": True, "custom_validator": lambda t: _host_error(t, allow_port=True)}},
    {"weight": {"type": "integer", "default": 100, "between": [0, 65535]}},
    {"tags": TAGS},
]
PLUGIN_FIELDS = [
    {"id": UUID},
    {"created_at": TIMESTAMP},
    {"updated_at": TIMESTAMP},
    {"name": {"type": "string", "required": True}},
    {"instance_name": {"type": "string", "custom_validator": _utf8_name_error}},
    {"config": {"type": "foreign"}},  # checked against the plugin's own schema by plugin_schema
    {"enabled": {"type": "boolean", "required": True, "default": True}},
    {
        "protocols": {
            "type": "set",
            "required": True,
            "default": list(HTTP_PROTOCOLS),
            "elements": {"type": "string", "one_of": list(PROTOCOLS)},
        }
    },
    {"tags": TAGS},
]
SCHEMAS: dict[str, list[dict[str, Any]]] = {
    "services": SERVICE_FIELDS,
    "routes": route_fields("traditional_compatible"),
    "consumers": CONSUMER_FIELDS,
    "upstreams": UPSTREAM_FIELDS,
    "targets": TARGET_FIELDS,
    "plugins": PLUGIN_FIELDS,
}


def quoted_list(names: tuple[str, ...] | list[str]) -> str:
    """Kong's `quoted_list`: `'a', 'b', 'c'`."""
    return ", ".join(f"'{n}'" for n in names)


def entity_checks(kind: str, v: dict[str, Any]) -> None:
    """The entity-level checks Kong runs after field validation (routes_subschemas, services, consumers)."""
    if kind == "routes":
        _route_checks(v)
    elif kind == "services":
        if v["protocol"] not in ("http", "https", "ws", "wss") and v["path"] is not None:
            raise ConfigError("value must be null", field="path")
        for name in ("client_certificate", "tls_verify", "tls_verify_depth", "ca_certificates"):  # services.lua:59-76
            if v["protocol"] not in ("https", "tls") and v[name] not in (None, {"id": None}):
                raise ConfigError("value must be null", field=name)
    elif kind == "consumers" and not (v["username"] or v["custom_id"]):
        raise ConfigError("at least one of these fields must be non-empty: " + quoted_list(["custom_id", "username"]))


def _route_checks(v: dict[str, Any]) -> None:
    protocols = set(v["protocols"])
    if not any(protocols <= set(subset) for subset in EXCLUSIVE_PROTOCOLS):
        subsets = ", ".join("(" + quoted_list(s) + ")" for s in EXCLUSIVE_PROTOCOLS)
        raise ConfigError(f"these sets are mutually exclusive: {subsets}", field="protocols")
    tls_like = protocols & {"grpcs", "https", "tls", "tls_passthrough"}
    if v["snis"] and not tls_like:
        raise ConfigError("'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls' or 'tls_passthrough'")
    if protocols & set(HTTP_PROTOCOLS):
        fields = ["methods", "hosts", "headers", "paths", *(["snis"] if tls_like else [])]
        if not any(v[f] for f in fields):
            label = "https" if tls_like else "http"
            raise ConfigError(f"must set one of {quoted_list(fields)} when 'protocols' is '{label}'")


def normalize_target(target: str) -> str:
    """targets.lua: a target without a port gets Kong's default 8000."""
    if re.fullmatch(r"\[[0-9a-fA-F:.]+\]:\d+|[^:]+:\d+", target):
        return target
    if ":" in target and not target.startswith("["):
        return f"[{target}]:8000"
    return f"{target}:8000"
