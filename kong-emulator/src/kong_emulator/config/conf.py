r"""kong.conf + `KONG_*` environment variables, parsed as Kong 3.9's `kong/conf_loader` does (the emulator's subset).

Order of precedence, as in Kong: built-in defaults (`kong/templates/kong_defaults.lua`) < the kong.conf file <
`KONG_<UPPER_KEY>` environment variables. File values lose a trailing `# comment` (Kong's `infer_value`:
`gsub("[^\\]#.-$", "")` then `\#` → `#`); environment values are taken verbatim. `NONE` means unset.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from kong_emulator.config.errors import ConfigError

WHERE = "in kong.conf"

DEFAULTS: dict[str, str] = {
    "prefix": "/usr/local/kong/",
    "log_level": "notice",
    "plugins": "bundled",
    "pluginserver_names": "NONE",
    "proxy_listen": "0.0.0.0:8000 reuseport backlog=16384, 0.0.0.0:8443 http2 ssl reuseport backlog=16384",
    "status_listen": "off",  # the Status API (kong_emulator.listeners.status); Kong 3.9's default is off
    # TLS on `ssl` proxy listeners (listeners/tls.py); a cipher suite other than `custom` overrides ssl_protocols
    "ssl_cert": "NONE",
    "ssl_cert_key": "NONE",
    "ssl_cipher_suite": "intermediate",
    "ssl_ciphers": "NONE",
    "ssl_protocols": "TLSv1.1 TLSv1.2 TLSv1.3",
    "ssl_prefer_server_ciphers": "on",
    "ssl_dhparam": "NONE",
    "ssl_session_tickets": "on",
    "ssl_session_timeout": "1d",
    "ssl_session_cache_size": "10m",
    "headers": "server_tokens, latency_tokens, X-Kong-Request-Id",
    "headers_upstream": "X-Kong-Request-Id",
    "trusted_ips": "NONE",
    "real_ip_header": "X-Real-IP",
    "real_ip_recursive": "off",
    "database": "postgres",
    "declarative_config": "NONE",
    "router_flavor": "traditional_compatible",
    "nginx_worker_processes": "auto",
    "nginx_http_client_max_body_size": "0",
    "error_default_type": "text/plain",
    "error_template_html": "NONE",
    "error_template_json": "NONE",
    "error_template_xml": "NONE",
    "error_template_plain": "NONE",
    "emulator_reply_timeout": "60",
    "emulator_strict": "off",
}
LOG_LEVELS = ("debug", "info", "notice", "warn", "error", "crit", "alert", "emerg")
ROUTER_FLAVORS = ("traditional", "traditional_compatible", "expressions")
# kong/conf_loader/constants.lua: an enum; error_template_* are plain strings (a missing file is only logged, at use)
ERROR_DEFAULT_TYPES = ("application/json", "application/xml", "text/html", "text/plain")
# kong/constants.lua HEADERS + the two token groups, lower-cased
HEADER_TOKENS = {
    "server_tokens": ("Server", "Via"),
    "latency_tokens": ("X-Kong-Proxy-Latency", "X-Kong-Response-Latency", "X-Kong-Upstream-Latency"),
}
KNOWN_HEADERS = (
    "Server", "Via", "X-Kong-Proxy-Latency", "X-Kong-Response-Latency", "X-Kong-Upstream-Latency",
    "X-Kong-Upstream-Status", "X-Kong-Admin-Latency", "X-Kong-Request-Id",
)  # fmt: skip
_LISTEN_FLAG = re.compile(
    r"^(ssl|http2|proxy_protocol|deferred|bind|reuseport|backlog=\d+|ipv6only=(on|off)"
    r"|so_keepalive=(on|off|\w*:\w*:\d*))$"
)


class ListenConf(NamedTuple):
    """One `proxy_listen` entry: unpacks as `(host, port, flags)`."""

    host: str
    port: int
    flags: tuple[str, ...]

    @property
    def ssl(self) -> bool:
        return "ssl" in self.flags


@dataclass(frozen=True)
class PluginServerConf:
    """One `pluginserver_names` entry with its three `pluginserver_<name>_*` settings (3.9 defaults applied)."""

    name: str
    socket: str
    start_cmd: str | None
    query_cmd: str | None


@dataclass(frozen=True)
class KongConf:
    """The settings the emulator reads; `raw` holds every key (defaults, file, environment) as strings."""

    prefix: str
    log_level: str
    plugins: list[str]
    pluginservers: list[PluginServerConf]
    declarative_config: str | None
    database: str
    proxy_listen: list[ListenConf]
    nginx_worker_processes: int
    router_flavor: str
    trusted_ips: list[str]
    real_ip_header: str
    real_ip_recursive: bool
    headers: list[str]
    headers_upstream: list[str]
    client_max_body_size: int  # bytes, 0 = unlimited (nginx_http_client_max_body_size)
    emulator_reply_timeout: float
    emulator_strict: bool
    raw: dict[str, str] = field(default_factory=dict)

    @functools.cached_property
    def enabled_headers(self) -> frozenset[str]:
        """Response header names Kong adds, with `server_tokens`/`latency_tokens` expanded (lower-case)."""
        return expand_headers(self.headers)


def load_kong_conf(
    path: str | None, environ: Mapping[str, str], *, exists: Callable[[str], bool] = os.path.exists
) -> KongConf:
    """Defaults, then the file at `path` (None = no file), then `KONG_*` variables; validated like Kong."""
    raw = dict(DEFAULTS)
    if path is not None:
        with open(path, encoding="utf-8") as fh:
            raw.update(parse_conf_text(fh.read()))
    raw.update(env_overrides(environ))
    return build_conf(raw, exists=exists)


def parse_conf_text(text: str) -> dict[str, str]:
    """`key = value` lines; `#` starts a comment (a whole line, or after a value); `\\#` is a literal `#`."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")) or "=" not in stripped:
            continue
        key, value = stripped.split("=", 1)
        out[key.strip()] = strip_comment(value)
    return out


def strip_comment(value: str) -> str:
    """Kong's `infer_value` for file values: drop from the character before an unescaped `#`, unescape, strip."""
    value = re.sub(r"[^\\]#.*$", "", value, count=1, flags=re.S)
    return value.replace("\\#", "#").strip()


def env_overrides(environ: Mapping[str, str]) -> dict[str, str]:
    """Every `KONG_<KEY>` variable as `<key>` (lower-case), value stripped but not comment-stripped."""
    return {k[5:].lower(): v.strip() for k, v in environ.items() if k.upper().startswith("KONG_") and len(k) > 5}


def build_conf(raw: dict[str, str], *, exists: Callable[[str], bool] = os.path.exists) -> KongConf:
    """Turn the merged string table into a typed, validated KongConf."""
    prefix = os.path.abspath(raw["prefix"])
    headers = parse_array(raw["headers"])
    check_headers(headers)
    parse_enum(raw, "error_default_type", ERROR_DEFAULT_TYPES)
    return KongConf(
        prefix=prefix,
        log_level=parse_enum(raw, "log_level", LOG_LEVELS),
        plugins=parse_plugins(raw["plugins"]),
        pluginservers=parse_pluginservers(raw, prefix, exists),
        declarative_config=none_if_unset(raw["declarative_config"]),
        database=raw["database"],
        proxy_listen=parse_listeners(raw["proxy_listen"], "proxy_listen"),
        nginx_worker_processes=parse_workers(raw["nginx_worker_processes"]),
        router_flavor=parse_enum(raw, "router_flavor", ROUTER_FLAVORS),
        trusted_ips=parse_array(raw["trusted_ips"]),
        real_ip_header=raw["real_ip_header"],
        real_ip_recursive=parse_bool(raw, "real_ip_recursive"),
        headers=headers,
        headers_upstream=parse_array(raw["headers_upstream"]),
        client_max_body_size=parse_size(raw["nginx_http_client_max_body_size"], "nginx_http_client_max_body_size"),
        emulator_reply_timeout=parse_number(raw, "emulator_reply_timeout"),
        emulator_strict=parse_bool(raw, "emulator_strict"),
        raw=dict(raw),
    )


def none_if_unset(value: str | None) -> str | None:
    """Kong's `NONE` (and an empty value) means the setting is unset."""
    return None if value is None or value in ("", "NONE") else value


def parse_array(value: str) -> list[str]:
    """Kong's array type: comma-separated, each element stripped; `NONE`/empty is the empty list."""
    if none_if_unset(value) is None:
        return []
    return [v.strip() for v in value.split(",") if v.strip()]


def parse_bool(raw: Mapping[str, str], key: str) -> bool:
    """`on`/`true` and `off`/`false`, else Kong's `<key> is not a boolean: '<v>'`."""
    value = raw[key].lower()
    if value in ("on", "true"):
        return True
    if value in ("off", "false"):
        return False
    raise ConfigError(f"{key} is not a boolean: '{raw[key]}'", where=WHERE)


def parse_number(raw: Mapping[str, str], key: str) -> float:
    """A number, else Kong's `<key> is not a number: '<v>'`."""
    try:
        return float(raw[key])
    except ValueError:
        raise ConfigError(f"{key} is not a number: '{raw[key]}'", where=WHERE) from None


def parse_enum(raw: Mapping[str, str], key: str, allowed: tuple[str, ...]) -> str:
    """One of `allowed`, else Kong's `<key> has an invalid value: '<v>' (a, b, c)`."""
    if raw[key] not in allowed:
        raise ConfigError(f"{key} has an invalid value: '{raw[key]}' ({', '.join(allowed)})", where=WHERE)
    return raw[key]


def parse_workers(value: str) -> int:
    """`auto` is the number of CPUs, as nginx's `worker_processes auto`."""
    if value == "auto":
        return os.cpu_count() or 1
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"nginx_worker_processes is not a number: '{value}'", where=WHERE)
    return int(value)


def parse_size(value: str, key: str) -> int:
    """An nginx size (`0`, `8k`, `10m`, `1g`) in bytes."""
    m = re.fullmatch(r"(\d+)([kKmMgG]?)", value)
    if not m:
        raise ConfigError(f"{key} must be a size (e.g. 10m): '{value}'", where=WHERE)
    return int(m.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2).lower()]


def parse_plugins(value: str) -> list[str]:
    """`plugins`: lower-cased names; `bundled` stays as a marker; `off` first disables every plugin."""
    names = [n.lower() for n in parse_array(value)]
    if not names or names[0] == "off":
        return []
    return [n for n in names if n != "off"]


def check_headers(headers: list[str]) -> None:
    """Kong's `headers: invalid entry '<x>'` for anything but the tokens, the known names and `off`."""
    allowed = {"off", *HEADER_TOKENS, *(h.lower() for h in KNOWN_HEADERS)}
    for token in headers:
        if token.lower() not in allowed:
            raise ConfigError(f"headers: invalid entry '{token}'", where=WHERE)


def expand_headers(headers: list[str]) -> frozenset[str]:
    """The lower-cased header names enabled by a `headers` list (`off` anywhere disables them all)."""
    lowered = [h.lower() for h in headers]
    if "off" in lowered:
        return frozenset()
    names: set[str] = set()
    for token in lowered:
        names.update(h.lower() for h in HEADER_TOKENS.get(token, (token,)))
    return frozenset(names)


def parse_listeners(value: str, key: str) -> list[ListenConf]:
    """Kong's `parse_listeners`: `off`, or `<ip>:<port> [flags...]` entries separated by commas."""
    if value.strip() == "off":
        return []
    out = []
    for entry in parse_array(value):
        address, *flags = entry.split()
        m = re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[^:\s]+):(\d+)", address)
        bad = [f for f in flags if not _LISTEN_FLAG.match(f)]
        if not m or bad or int(m.group(2)) > 65535:
            raise ConfigError(
                f"{key} must be of form: [off] | <ip>:<port> [ssl] [http2] [proxy_protocol] [deferred] [bind] "
                f"[reuseport] [backlog=%d+] [ipv6only=on] [ipv6only=off] [so_keepalive=on] [so_keepalive=off] "
                f"[so_keepalive=%w*:%w*:%d*], [... next entry ...] (got '{entry}')",
                where=WHERE,
            )
        out.append(ListenConf(m.group(1).strip("[]"), int(m.group(2)), tuple(flags)))
    return out


def parse_pluginservers(raw: Mapping[str, str], prefix: str, exists: Callable[[str], bool]) -> list[PluginServerConf]:
    """Kong 3.9 `pluginserver_names` handling: socket `<prefix>/<name>.socket`, query_cmd required."""
    servers = []
    for name in (n.lower() for n in parse_array(raw.get("pluginserver_names", "NONE"))):
        key = "pluginserver_" + name.replace("-", "_")
        default_bin = f"/usr/local/bin/{name}"
        start_cmd = none_if_unset(raw.get(f"{key}_start_cmd")) or (default_bin if exists(default_bin) else None)
        default_query = f"{default_bin} -dump" if exists(default_bin) else None
        query_cmd = none_if_unset(raw.get(f"{key}_query_cmd")) or default_query
        if query_cmd is None:
            raise ConfigError(f"query_command undefined for pluginserver {name}", where=WHERE, field=f"{key}_query_cmd")
        socket = none_if_unset(raw.get(f"{key}_socket")) or f"{prefix}/{name}.socket"
        servers.append(PluginServerConf(name=name, socket=socket, start_cmd=start_cmd, query_cmd=query_cmd))
    return servers
