"""The per-request state the emulated PDK reads and writes (Kong's `ngx.var`, `ngx.ctx`, `kong.ctx.shared`).

The proxy fills the request half, plugins change it through PDK calls, the proxy then builds the upstream
request from `upstream` and the client response from `response`.
"""

from __future__ import annotations

from collections.abc import Iterable, Set
from dataclasses import dataclass, field
from typing import Any

from kong_emulator.config.entities import Consumer, Plugin, Route, Service

MAX_REQ_HEADERS = 100  # lua_max_req_headers


def wire_text(value: str) -> str:
    """A Lua string as aiohttp can write it: aiohttp's writer is UTF-8 only (it would drop a surrogate escape
    silently), so bytes that are not UTF-8 go out as U+FFFD. Only plugin servers see Kong's exact bytes."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return value


class Headers:
    """A case-insensitive multi-map that keeps the first-seen spelling of each name (as nginx does).

    The lower-case names are kept next to the pairs: lookups compare them without lower-casing every name again.
    """

    __slots__ = ("_items", "_lower", "_vars")

    def __init__(self, items: list[tuple[str, str]] | None = None) -> None:
        self._items: list[tuple[str, str]] = items if items is not None else []
        self._lower: list[str] = [k.lower() for k, _ in self._items]
        self._vars: dict[str, tuple[str, ...]] | None = None  # nginx variable spelling → values, made on first use

    def var_values(self, var: str) -> tuple[str, ...]:
        """The values of the headers whose name, lower-cased with '-' read as '_', is ``var`` (nginx's
        ``$http_<var>`` lookup)."""
        index = self._vars
        if index is None:  # built once per set of headers: every change below drops it
            lists: dict[str, list[str]] = {}
            for k, (_, v) in zip(self._lower, self._items, strict=True):
                lists.setdefault(k.replace("-", "_"), []).append(v)
            index = self._vars = {k: tuple(v) for k, v in lists.items()}
        return index.get(var, ())

    @classmethod
    def from_pairs(cls, pairs) -> Headers:
        return cls([(str(k), str(v)) for k, v in pairs])

    @classmethod
    def from_raw(cls, raw: Iterable[tuple[bytes, bytes]]) -> Headers:
        """Header lines as Lua strings: their bytes as sent (non-UTF-8 bytes kept as surrogate escapes)."""
        return cls([(k.decode("utf-8", "surrogateescape"), v.decode("utf-8", "surrogateescape")) for k, v in raw])

    def without(self, lower_names: Set[str]) -> Headers:
        """A copy without the headers whose lower-case name is in ``lower_names``."""
        out = Headers.__new__(Headers)
        keep = [i for i, k in enumerate(self._lower) if k not in lower_names]
        out._items = [self._items[i] for i in keep]
        out._lower = [self._lower[i] for i in keep]
        out._vars = None
        return out

    def get(self, name: str) -> str | None:
        lname = name.lower()
        for i, k in enumerate(self._lower):
            if k == lname:
                return self._items[i][1]
        return None

    def get_all(self, name: str) -> list[str]:
        lname = name.lower()
        items = self._items
        return [items[i][1] for i, k in enumerate(self._lower) if k == lname]

    def set(self, name: str, value: str | list[str]) -> None:
        lname = name.lower()
        if lname in self._lower:
            self._drop(lname)
        if isinstance(value, list):
            for v in value:
                self._items.append((name, str(v)))
                self._lower.append(lname)
        else:
            self._items.append((name, value if type(value) is str else str(value)))
            self._lower.append(lname)
        self._vars = None

    def add(self, name: str, value: str) -> None:
        self._items.append((name, str(value)))
        self._lower.append(name.lower())
        self._vars = None

    def apply(self, ops: list[tuple[str, str | None]]) -> None:
        """``set(name, value)``, or ``clear(name)`` where value is None, for each pair in order -- in one pass:
        the names no pair touches keep their place, then each set name follows in the order of its last pair."""
        last: dict[str, tuple[str, str | None]] = {}
        for name, value in ops:
            lname = name.lower()
            last.pop(lname, None)  # the dict's order: the order of each name's last operation
            last[lname] = (name, value)
        keep = [i for i, k in enumerate(self._lower) if k not in last]
        items = [self._items[i] for i in keep]
        lower = [self._lower[i] for i in keep]
        for lname, (name, value) in last.items():
            if value is not None:
                items.append((name, value))
                lower.append(lname)
        self._items, self._lower, self._vars = items, lower, None

    def clear(self, name: str) -> None:
        lname = name.lower()
        if lname in self._lower:
            self._drop(lname)

    def _drop(self, lname: str) -> None:
        keep = [i for i, k in enumerate(self._lower) if k != lname]
        self._items = [self._items[i] for i in keep]
        self._lower = [self._lower[i] for i in keep]
        self._vars = None

    def lower_names(self) -> list[str]:
        """The lower-case names, in order (do not change the list)."""
        return self._lower

    def lower_items(self) -> list[tuple[str, str]]:
        """(lower-case name, value) pairs, in order."""
        return [(k, v) for k, (_, v) in zip(self._lower, self._items, strict=True)]

    def lower_multimap(self) -> dict[str, list[str]]:
        """Kong's `get_headers()` after fix_mmap: lower-case names, every value a list."""
        out: dict[str, list[str]] = {}
        for k, (_, v) in zip(self._lower, self._items, strict=True):
            out.setdefault(k, []).append(v)
        return out

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def copy(self) -> Headers:
        out = Headers.__new__(Headers)
        out._items, out._lower, out._vars = list(self._items), list(self._lower), self._vars
        return out

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._lower

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass
class ClientRequest:
    """The request as the client sent it (read-only for plugins, as in nginx)."""

    method: str
    scheme: str
    host: str  # Host header without port
    port: int  # the proxy listener's port
    path: str  # nginx's $uri: percent-decoded, slashes merged, dot segments resolved (the access log's `uri`)
    raw_path: str  # path as sent, no query (the router normalizes it as Kong does: router.traditional.normalize_path)
    raw_query: str  # "" when absent
    headers: Headers
    body: bytes
    client_ip: str
    forwarded_ip: str
    http_version: float = 1.1
    start_time: float = 0.0  # seconds since epoch, ngx.req.start_time()
    client_port: int = 0  # the peer's port, kong.client.get_port()
    request_uri: str = ""  # nginx's $request_uri: the target as sent, with "?" and query ("" = raw_path + query)


@dataclass
class UpstreamRequest:
    """What will be sent upstream; `kong.service.request.*` changes it."""

    method: str
    path: str  # path after strip_path/service.path joining
    raw_query: str
    headers: Headers
    body: bytes | None = None  # None = the client's body unchanged
    scheme: str = "http"
    host: str | None = None  # target chosen by balancer / set_target
    port: int | None = None


def nginx_http_var(headers: Headers, name: str) -> str | None:
    """kong/tools/http.lua:545-565 ``get_header(name)``: ``ngx.var["http_" .. replace_dashes(name)]`` -- nginx compares
    each header name lower-cased with '-' read as '_', so ``X_User_Id`` answers for ``X-User-Id`` (Kong serves
    ``underscores_in_headers on``) and repeats are joined with ", "; a value with ", " is looked up again in
    ``ngx.req.get_headers()``, whose keys are lower-cased names as sent ('_' kept) and whose lookups read '_' as '-'."""
    values = headers.var_values(name.lower().replace("-", "_"))
    if not values:
        return None
    value = values[0] if len(values) == 1 else ", ".join(values)
    if ", " not in value:
        return value
    key = name.lower().replace("_", "-")
    for k, v in headers.lower_items()[:MAX_REQ_HEADERS]:
        if k == key:
            return v
    return None


@dataclass
class ExitResponse:
    """A response produced by `kong.response.exit`/`error` (or by the emulator itself)."""

    status: int
    body: bytes
    headers: Headers
    source: str = "exit"  # Kong's get_source(): "exit" | "error" | "service"


@dataclass
class ResponseState:
    """The response on its way to the client."""

    status: int | None = None
    headers: Headers = field(default_factory=Headers)  # headers plugins set with kong.response.set_header etc.
    body: bytes | None = None
    source: str | None = None


@dataclass
class RequestContext:
    """One request's state across phases; the PDK dispatcher reads and writes only this."""

    request: ClientRequest
    request_id: str
    route: Route | None = None
    service: Service | None = None
    consumer: Consumer | None = None
    credential: dict[str, Any] | None = None
    captures: dict[str, Any] | None = None  # get_uri_captures() shape: {"unnamed": {...}, "named": {...}}
    upstream: UpstreamRequest | None = None
    response: ResponseState = field(default_factory=ResponseState)
    exit: ExitResponse | None = None  # set by a terminal PDK call; later access plugins are skipped
    shared: dict[str, Any] = field(default_factory=dict)  # kong.ctx.shared
    nginx_ctx: dict[str, Any] = field(default_factory=dict)  # kong.nginx.get_ctx / set_ctx
    phase: str = "rewrite"
    current_plugin: Plugin | None = None
    log_lines: list[tuple[str, str, str]] = field(default_factory=list)  # (level, plugin name, message)
    # timings (ms), filled by the proxy
    latencies: dict[str, int] = field(default_factory=dict)
    upstream_uri: str | None = None
    upstream_status: int | None = None
    upstream_headers: Headers | None = None  # the service's response headers (kong.service.response.*)
    upstream_body: bytes | None = None  # the service's response body, when buffered (response phase)
    snapshot: LogSnapshot | None = None
    worker_id: int | None = None  # the simulated nginx worker serving this request (set by bridge.PluginRunner)


@dataclass
class LogSnapshot:
    """What Kong copies when the log handler starts: the log phase reads these, not the live request."""

    serialized: dict[str, Any]
    request_headers: Headers
    response_headers: Headers
    status: int
    shared: dict[str, Any]
    nginx_ctx: dict[str, Any]
    start_time: float
    response_source: str

    @classmethod
    def take(cls, ctx: RequestContext, serialized: dict[str, Any], response_headers: Headers, status: int):
        return cls(
            serialized=serialized,
            request_headers=ctx.request.headers.copy(),
            response_headers=response_headers.copy(),
            status=status,
            shared=ctx.shared,  # Kong keeps the kong.ctx.shared *reference*
            nginx_ctx=dict(ctx.nginx_ctx),  # plugin.lua:164 `clone(ngx.ctx)`: a shallow copy
            start_time=ctx.request.start_time,
            response_source=ctx.response.source or "service",
        )
