"""Kong 3.x route matching, `router_flavor = traditional_compatible` (the default): the ATC router fed by compat rules.

Sources (Kong/kong): `kong/router/transform.lua` (`get_expression`, `get_priority`,
`split_routes_and_services_by_path`),
`kong/router/atc.lua` (`select`), `kong/router/utils.lua` (`get_upstream_uri_v0`, `sanitize_uri_postfix`),
`kong/tools/uri.lua` (`normalize`), and the atc-router crate (matchers in a BTreeMap keyed by (priority, uuid),
evaluated from the highest key down).
"""

from __future__ import annotations

import re
import string
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kong_emulator.config.entities import Route, Service

SPLIT_NAMESPACE = uuid.UUID("7f145bf9-0dce-4f91-98eb-debbce4b9f6b")  # transform.lua uuid.factory_v5
PLAIN_HOST_ONLY_BIT = 1 << 60
REGEX_URL_BIT = 1 << 51
MAX_HEADER_COUNT = 255
HTTPS_PROTOCOLS = ("https", "grpcs", "wss")
HTTP_SUBSYSTEM = frozenset({"http", "https", "grpc", "grpcs", "ws", "wss"})
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
_RESERVED = frozenset(b"!*'();:@&=+$,/?%#[]")  # kong/tools/uri.lua:28 RESERVED_CHARS


# ---- paths -------------------------------------------------------------------------------------------------------


def normalize_path(uri: str, merge_slashes: bool = True) -> str:
    """`kong.tools.uri.normalize`: decode %XX of unreserved chars (upper-case others), merge `//`, drop dot segments."""
    if uri in ("", "/"):
        return uri
    if "%" in uri:  # on the bytes: %C3%A9 is two bytes of one character, %FF one byte of none
        raw = re.sub(rb"%([0-9a-fA-F]{2})", _decode_unreserved, uri.encode("utf-8", "surrogateescape"))
        uri = raw.decode("utf-8", "surrogateescape")
    if "." not in uri:
        return re.sub("//+", "/", uri) if merge_slashes else uri
    segments = uri.split("/")
    out: list[str] = []
    for i, seg in enumerate(segments):
        if seg == "..":
            if out:
                out.pop()
        elif seg == "." or (seg == "" and (merge_slashes or i == 0)):
            continue
        else:
            out.append(seg)
    result = "/" + "/".join(out)
    if segments[-1] in ("", ".", "..") and out:
        result += "/"
    return result


def _decode_unreserved(m: re.Match[bytes]) -> bytes:
    """uri.lua:48-58 normalize_decode: a reserved character stays encoded (upper-cased), any other byte is decoded."""
    num = int(m.group(1), 16)
    return b"%" + m.group(1).upper() if num in _RESERVED else bytes((num,))


def pcre_to_python(regex: str) -> str:
    """PCRE named groups `(?<name>...)` → Python `(?P<name>...)` (look-behinds `(?<=`/`(?<!` untouched)."""
    return re.sub(r"\(\?<(?![=!])", "(?P<", regex)


def compile_path_regex(regex: str, router_flavor: str = "traditional_compatible") -> re.Pattern[str]:
    """Compile a route regex (without its `~`) as Kong's router uses it: anchored at the start. Outside the
    `traditional` flavor it is a Rust regex::Regex ("^" .. path, kong/router/transform.lua:323-327), where `$` is the
    end of the text only, never before a final newline (Python's and PCRE's `$`): `$` becomes `\\Z`."""
    python = pcre_to_python(regex)
    if router_flavor != "traditional":
        python = _end_of_text(python)
    return re.compile("^(?:" + python + ")")


def _end_of_text(regex: str) -> str:
    """Every `$` that is neither escaped nor inside a character class, as `\\Z`."""
    out, escaped, in_class = [], False, False
    for ch in regex:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "[":
            in_class = True
        elif ch == "]":
            in_class = False
        elif ch == "$" and not in_class:
            ch = "\\Z"
        out.append(ch)
    return "".join(out)


def regex_path_error(path: str, router_flavor: str = "traditional_compatible") -> str | None:
    """Kong's route-path regex checks: PCRE dry run, then (non-traditional flavors) the Rust-regex ATC validation."""
    regex = path[1:]
    try:
        re.compile(pcre_to_python(regex))
    except re.error as exc:
        return f"invalid regex: '{regex}' (PCRE returned: {exc})"
    if router_flavor != "traditional":
        if re.search(r"\(\?<?[=!]", regex):
            return "Router Expression failed validation: regex parse error: look-around, including look-ahead and look-behind, is not supported"  # noqa: E501
        if re.search(r"\\[1-9]|\\k<", regex):
            return "Router Expression failed validation: regex parse error: backreferences are not supported"
    return None


def sanitize_uri_postfix(postfix: str) -> str:
    """`utils.sanitize_uri_postfix`: a postfix may not climb out of the service path."""
    if postfix in (".", ".."):
        return ""
    if postfix.startswith("./"):
        return postfix[2:]
    if postfix.startswith("../"):
        return postfix[3:]
    return postfix


def upstream_uri_v0(strip_path: bool, postfix: str, req_uri: str, base: str) -> str:
    """`utils.get_upstream_uri_v0`: join the service path and the request path (postfix when stripped)."""
    if base.endswith("/"):
        if not strip_path:
            return base + req_uri[1:]
        if postfix == "":
            if base == "/":
                return "/"
            return base if req_uri.endswith("/") else base[:-1]
        if postfix.startswith("/"):
            return base[:-1] + postfix
        return base + postfix
    if not strip_path:
        return base if req_uri == "/" else base + req_uri
    if postfix == "":
        return base + "/" if len(req_uri) > 1 and req_uri.endswith("/") else base
    return base + postfix if postfix.startswith("/") else base + "/" + postfix


def upstream_uri_v1(strip_path: bool, postfix: str, req_uri: str, base: str) -> str:
    """`traditional.lua` path_handling v1 (only under `router_flavor = traditional`)."""
    if not strip_path:
        return base + req_uri[1:]
    if base.endswith("/") and postfix.startswith("/"):
        return base[:-1] + postfix
    return base + postfix


# ---- hosts and headers -------------------------------------------------------------------------------------------


def split_host_port(value: str) -> tuple[str, int | None]:
    """`transform.split_host_port`: `example.com:123` → ('example.com', 123); a non-numeric suffix is kept."""
    host, sep, port = value.partition(":")
    if sep and port.isdigit():
        return host, int(port)
    return value, None


def _host_matcher(entry: str) -> tuple[str, str, int | None]:
    host, port = split_host_port(entry)
    host = host.lower()
    if host.startswith("*"):
        return "postfix", host[1:], port
    if host.endswith("*"):
        return "prefix", host[:-1], port
    return "equal", host, port


def _host_ok(matchers: tuple[tuple[str, str, int | None], ...], host: str, port: int) -> bool:
    for op, value, want_port in matchers:
        if want_port is not None and want_port != port:
            continue
        if (op == "equal" and host == value) or (op == "postfix" and host.endswith(value)):
            return True
        if op == "prefix" and host.startswith(value):
            return True
    return False


def _header_name(name: str) -> str:
    return name.lower().replace("_", "-")


def _header_matchers(headers: Mapping[str, list[str]] | None) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    out = []
    for name, values in (headers or {}).items():
        tests = tuple(re.compile(v[2:].lower()) if v.startswith("~*") else v.lower() for v in values)
        out.append((_header_name(name), tests))
    return tuple(out)


def request_header_values(headers: Any) -> dict[str, list[str]]:
    """Lower-cased, dash-normalised names → lower-cased values; `host` is left out as Kong does."""
    if hasattr(headers, "lower_multimap"):
        items = headers.lower_multimap().items()
    else:
        items = (headers or {}).items()
    out: dict[str, list[str]] = {}
    for name, value in items:
        values = value if isinstance(value, list | tuple) else [value]
        out.setdefault(_header_name(name), []).extend(str(v).lower() for v in values)
    out.pop("host", None)
    return out


def _headers_ok(matchers: tuple[tuple[str, tuple[Any, ...]], ...], req: dict[str, list[str]]) -> bool:
    for name, tests in matchers:
        values = req.get(name, [])
        if not any((t.search(v) if isinstance(t, re.Pattern) else t == v) for t in tests for v in values):
            return False
    return True


# ---- the router --------------------------------------------------------------------------------------------------


def route_priority(route: Route, paths: list[str]) -> int:
    """`transform.get_priority` for one path group: weight, plain-host, header count, regex, regex_priority, length."""
    weight = sum(1 for f in (route.methods, route.hosts, route.headers, getattr(route, "snis", None)) if f)
    header_count = min(len(route.headers or {}), MAX_HEADER_COUNT)
    plain_host_only = bool(route.hosts) and not any("*" in h for h in route.hosts or [])
    regex_url, uri_length = False, 0
    if paths:
        weight += 1
        regex_url = paths[0].startswith("~")
        uri_length = 0 if regex_url else len(paths[0])
    regex_priority = min(max(route.regex_priority, 0), 0xFFFFFFFF) if regex_url else 0
    return (
        (min(weight, 7) << 61)
        | (PLAIN_HOST_ONLY_BIT if plain_host_only else 0)
        | (REGEX_URL_BIT if regex_url else 0)
        | (header_count << 52)
        | (regex_priority << 19)
        | (uri_length & 0x7FFFF)
    )


def split_paths(route: Route) -> list[tuple[str, list[str]]]:
    """`split_routes_and_services_by_path`: one matcher per prefix length and one for all regexes, uuid5 ids."""
    paths = route.paths or []
    groups: dict[int, list[str]] = {}
    for p in paths:
        groups.setdefault(0 if p.startswith("~") else len(p), []).append(p)
    if len(groups) <= 1:
        return [(route.id, list(paths))]
    return [(str(uuid.uuid5(SPLIT_NAMESPACE, f"{route.id}#{i}")), g) for i, g in enumerate(groups.values(), 1)]


@dataclass(frozen=True)
class _Matcher:
    sort_key: tuple[int, bytes]
    route: Route
    paths: tuple[tuple[str, re.Pattern[str] | None], ...]
    methods: frozenset[str]
    hosts: tuple[tuple[str, str, int | None], ...]
    headers: tuple[tuple[str, tuple[Any, ...]], ...]
    snis: frozenset[str]


@dataclass(frozen=True)
class RouteMatch:
    """The router's answer: the route, its service, the URI captures and the upstream path Kong computes."""

    route: Route
    service: Service | None
    captures: dict[str, dict[Any, str]]  # get_uri_captures(): {"unnamed": {0: full, 1: ...}, "named": {...}}
    matched_path: str | None
    upstream_path: str

    @property
    def upstream_scheme(self) -> str:
        return self.service.protocol if self.service else "http"

    def upstream_host(
        self, request_host: str, target_host: str, target_port: int, host_header: str | None = None
    ) -> str:
        """The upstream Host header: the client's (preserve_host), else the upstream's host_header or the target."""
        if self.route.preserve_host:
            return request_host
        if host_header:
            return host_header
        default = 443 if self.upstream_scheme in HTTPS_PROTOCOLS else 80
        return target_host if target_port == default else f"{target_host}:{target_port}"


def https_redirect_status(route: Route, scheme: str) -> int | None:
    """`handler.lua`: a route that only accepts https answers a plain-http request with its redirect code (426)."""
    protocols = set(route.protocols or [])
    if "https" in protocols and "http" not in protocols and scheme != "https":
        return route.https_redirect_status_code
    return None


class Router:
    """All routes compiled once; `match` walks matchers from the highest (priority, uuid) down, like atc-router."""

    def __init__(
        self, routes: list[Route], services: Mapping[str, Service], router_flavor: str = "traditional_compatible"
    ):
        self.services = services
        self.flavor = router_flavor
        http_routes = [r for r in routes if HTTP_SUBSYSTEM.intersection(r.protocols or ())]
        self._matchers = sorted(
            (m for r in http_routes for m in self._compile(r, router_flavor)), key=lambda m: m.sort_key, reverse=True
        )

    @staticmethod
    def _compile(route: Route, flavor: str) -> list[_Matcher]:
        out = []
        for matcher_id, paths in split_paths(route):
            compiled = tuple((p, compile_path_regex(p[1:], flavor) if p.startswith("~") else None) for p in paths)
            out.append(
                _Matcher(
                    sort_key=(route_priority(route, paths), _uuid_bytes(matcher_id)),
                    route=route,
                    paths=compiled,
                    methods=frozenset(route.methods or ()),
                    hosts=tuple(_host_matcher(h) for h in route.hosts or ()),
                    headers=_header_matchers(route.headers),
                    snis=frozenset(getattr(route, "snis", None) or ()),
                )
            )
        return out

    def match(
        self, method: str, host: str, path: str, headers: Any, scheme: str = "http", *, port: int | None = None,
        sni: str | None = None,
    ) -> RouteMatch | None:  # fmt: skip
        """The first matching route for a request (path without query), or None (Kong's 404 "no Route matched")."""
        req_path = normalize_path(path.split("?", 1)[0] or "/")
        req_host, host_port = split_host_port(host or "")
        req_port = port or host_port or (443 if scheme == "https" else 80)
        req_headers = None  # the header values are gathered only when a matcher tests headers
        for m in self._matchers:
            if m.methods and method not in m.methods:
                continue
            if m.hosts and not _host_ok(m.hosts, req_host.lower(), req_port):
                continue
            if m.headers:
                if req_headers is None:
                    req_headers = request_header_values(headers)
                if not _headers_ok(m.headers, req_headers):
                    continue
            if m.snis and scheme == "https" and sni not in m.snis:
                continue
            found = _match_path(m.paths, req_path) if m.paths else (None, None)
            if found is None:
                continue
            return self._result(m.route, req_path, *found)
        return None

    def _result(self, route: Route, req_path: str, matched: str | None, regex_match: re.Match | None) -> RouteMatch:
        service = self.services.get(route.service_id) if route.service_id else None
        prefix = matched if route.strip_path else None
        postfix = sanitize_uri_postfix(req_path[len(prefix) :] if prefix is not None else req_path[1:]) or ""
        base = (service.path if service else None) or "/"
        if self.flavor == "traditional" and route.path_handling == "v1":
            upstream = upstream_uri_v1(route.strip_path, postfix, req_path, base)
        else:
            upstream = upstream_uri_v0(route.strip_path, postfix, req_path, base)
        return RouteMatch(route, service, uri_captures(regex_match), matched, upstream)


def _match_path(paths, req_path: str) -> tuple[str, re.Match[str] | None] | None:
    for path, regex in paths:
        if regex is None:
            if req_path.startswith(path):
                return path, None
        else:
            m = regex.match(req_path)
            if m:
                return m.group(0), m
    return None


def uri_captures(m: re.Match[str] | None) -> dict[str, dict[Any, str]]:
    """Kong's `matches.uri_captures` split as `get_uri_captures` does; empty unless capture 1 exists (atc.lua)."""
    if m is None or m.re.groups == 0 or m.group(1) is None:
        return {"unnamed": {}, "named": {}}
    unnamed: dict[Any, str] = {0: m.group(0)}
    unnamed.update({i: g for i, g in enumerate(m.groups(), 1) if g is not None})
    named = {k: v for k, v in m.groupdict().items() if v is not None}
    return {"unnamed": unnamed, "named": named}


def _uuid_bytes(value: str) -> bytes:
    try:
        return uuid.UUID(value).bytes
    except ValueError:
        return value.encode()
