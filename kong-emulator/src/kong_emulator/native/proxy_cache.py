"""Kong's bundled ``proxy-cache`` plugin with its ``memory`` strategy, run natively in Python (Kong 3.9).

Kong sources (Kong/kong): `kong/plugins/proxy-cache/handler.lua` (PRIORITY 100; ``access``, ``header_filter``,
``body_filter``), `schema.lua`, `cache_key.lua`, `strategies/memory.lua`.

* ``access``: a request whose method is not in ``request_method`` — or, with ``cache_control``, that says
  ``no-store``/``no-cache`` — is ``X-Cache-Status: Bypass``. Otherwise the key is
  ``sha256_hex("<prefix>|<method>|<request line without the query>|<query part>|<headers part>")`` where prefix is
  ``<consumer id>:<route id>``, ``<route id>`` or ``default`` (the **Kong consumer**, nothing else of the caller's
  identity), the query part every argument sorted (or only ``vary_query_params``), the headers part only
  ``vary_headers`` (none by default). ``X-Cache-Key`` is set. Found and fresh (``cache_ttl``, or the request's
  ``max-age``/``max-stale``/``min-fresh`` with ``cache_control``) → a **Hit**: the stored status, headers (minus
  hop-by-hop and ``*ratelimit-remaining*``), body, ``Age`` and ``X-Cache-Status: Hit``, sent with
  ``kong.response.exit`` after ``ctx.KONG_PROXIED = true`` (so ``Via`` as for a proxied answer, no latency headers
  for the missing upstream); ``kong.ctx.shared.proxy_cache_hit`` describes it for log plugins. Not found → **Miss**
  (``only-if-cached`` with ``cache_control`` → 504); found but stale → **Refresh**; both go upstream.
* ``header_filter``: after a Miss/Refresh, a response is cacheable when its status is in ``response_code``, its
  single ``Content-Type`` matches an entry of ``content_type`` (type/subtype with ``*`` wildcards and **the same
  parameters**: ``application/json`` does not match ``application/json; charset=utf-8``) and, with
  ``cache_control``, it is not ``private``/``no-store``/``no-cache`` and has a positive ``s-maxage``/``max-age``/
  ``Expires``; else ``X-Cache-Status: Bypass``. The headers are taken here (including what earlier plugins set).
* ``body_filter``: the whole body is stored for ``storage_ttl``, else (``cache_control``) the response's TTL, else
  ``cache_ttl`` seconds.
* ``response_headers`` (``age``, ``X-Cache-Status``, ``X-Cache-Key``) switch those headers; a ``Kong-Debug``
  request header forces the last two.

The memory strategy is one store per ``memory.dictionary_name`` for the whole node, as Kong's shm is shared by
the workers; entries expire after their TTL (Kong: the shm TTL). The cache does not survive a restart (neither
does Kong's shm). ``ngx.var.authorization`` in Kong's ``cacheable_request`` is not an nginx variable (always nil),
so a request carrying ``Authorization`` is cached like any other — the emulator does the same.
"""

from __future__ import annotations

import copy
import math
import re
import threading
import time
from email.utils import parsedate_to_datetime
from typing import Any

from kong_emulator import KONG_VERSION
from kong_emulator.config.entities import Plugin, PluginInfo
from kong_emulator.native.proxy_cache_key import build_cache_key
from kong_emulator.pdk.serialize import _querystring
from kong_emulator.runloop.context import ExitResponse, Headers

NAME = "proxy-cache"
PRIORITY = 100
CACHE_VERSION = 1
STRATEGY_TYPES = ("memory",)
# the lua_shared_dict names of Kong 3.9's nginx_kong.lua template
SHARED_DICTS = frozenset(
    {
        "kong", "kong_locks", "kong_healthchecks", "kong_cluster_events", "kong_rate_limiting_counters",
        "kong_core_db_cache", "kong_core_db_cache_miss", "kong_db_cache", "kong_db_cache_miss", "kong_secrets",
        "prometheus_metrics",
    }
)  # fmt: skip
HOP_BY_HOP = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
        "transfer-encoding", "upgrade", "content-length",
    }
)  # fmt: skip


_CONFIG_FIELDS: list[dict[str, Any]] = [
    {
        "response_code": {
            "type": "array",
            "default": [200, 301, 404],
            "elements": {"type": "integer", "between": [100, 900]},
            "len_min": 1,
            "required": True,
        }
    },
    {
        "request_method": {
            "type": "array",
            "default": ["GET", "HEAD"],
            "elements": {"type": "string", "one_of": ["HEAD", "GET", "POST", "PATCH", "PUT"]},
            "required": True,
        }
    },
    {
        "content_type": {
            "type": "array",
            "default": ["text/plain", "application/json"],
            "elements": {"type": "string"},
            "required": True,
        }
    },
    {"cache_ttl": {"type": "integer", "default": 300, "gt": 0}},
    {"strategy": {"type": "string", "one_of": list(STRATEGY_TYPES), "required": True}},
    {"cache_control": {"type": "boolean", "default": False, "required": True}},
    {"ignore_uri_case": {"type": "boolean", "default": False, "required": False}},
    {"storage_ttl": {"type": "integer"}},
    {
        "memory": {
            "type": "record",
            "fields": [
                {
                    "dictionary_name": {
                        "type": "string",
                        "required": True,
                        "default": "kong_db_cache",
                    }
                }
            ],
        }
    },
    {"vary_query_params": {"type": "array", "elements": {"type": "string"}}},
    {"vary_headers": {"type": "array", "elements": {"type": "string"}}},
    {
        "response_headers": {
            "type": "record",
            "required": True,
            # Kong fills a missing required record from its fields' defaults
            "default": {"age": True, "X-Cache-Status": True, "X-Cache-Key": True},
            "fields": [
                {"age": {"type": "boolean", "default": True}},
                {"X-Cache-Status": {"type": "boolean", "default": True}},
                {"X-Cache-Key": {"type": "boolean", "default": True}},
            ],
        }
    },
]


def schema() -> dict[str, Any]:
    """``kong/plugins/proxy-cache/schema.lua`` (3.9)."""
    return {
        "name": NAME,
        "fields": [{"config": {"type": "record", "fields": copy.deepcopy(_CONFIG_FIELDS)}}],
    }


def _stale(conf: dict, cc: dict, age: int, ttl: int) -> bool:
    """The cached entry must be refreshed (handler.lua's freshness checks: request Cache-Control, else cache_ttl)."""
    if not conf["cache_control"]:
        return age > conf["cache_ttl"]
    if _num(cc.get("max-age")) is not None and age > cc["max-age"]:
        return True
    if _num(cc.get("max-stale")) is not None and age - ttl > cc["max-stale"]:
        return True
    return _num(cc.get("min-fresh")) is not None and ttl - age < cc["min-fresh"]


def _entity_check(config: Any) -> str | None:
    """The schema's ``custom_entity_check``: the memory strategy needs an existing shared dict."""
    if isinstance(config, dict) and config.get("strategy") == "memory":
        name = (config.get("memory") or {}).get("dictionary_name")
        if name not in SHARED_DICTS:
            return f"missing shared dict '{name}'"
    return None


def info() -> PluginInfo:
    from kong_emulator.native.serverless import NativePluginInfo

    return NativePluginInfo(
        name=NAME,
        version=KONG_VERSION,
        priority=PRIORITY,
        phases=("access", "header_filter", "body_filter"),
        schema=schema(),
        entity_check=_entity_check,
    )


# ---- strategies/memory.lua ------------------------------------------------------------------------------------


class MemoryStore:
    """One ``ngx.shared[dictionary_name]``: key → (entry, expiry). ``fetch`` returns a deep copy (cjson round trip)."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[dict, float | None, int]] = {}
        self.lock = threading.Lock()

    def fetch(self, key: str, now: float) -> tuple[dict | None, str | None]:
        with self.lock:
            item = self.entries.get(key)
            if item is not None and item[1] is not None and now >= item[1]:
                del self.entries[key]
                item = None
        if item is None:
            return None, "request object not in cache"
        return copy.deepcopy(item[0]), None

    def store(self, key: str, obj: dict, ttl: float | None, now: float) -> None:
        expiry = now + ttl if ttl and ttl > 0 else None
        size = len(obj.get("body") or b"") + sum(len(k) + len(str(v)) for k, v in obj.get("headers", []))
        with self.lock:
            self.entries[key] = (copy.deepcopy(obj), expiry, size)

    def purge(self, key: str) -> None:
        with self.lock:
            self.entries.pop(key, None)

    def allocated(self) -> int:
        with self.lock:
            return sum(size + len(k) for k, (_, _, size) in self.entries.items())


STORES: dict[str, MemoryStore] = {}  # dictionary_name → store, node-wide like Kong's shm


def store_for(name: str) -> MemoryStore:
    store = STORES.get(name)
    if store is None:
        store = STORES[name] = MemoryStore()
    return store


# ---- handler.lua helpers ----------------------------------------------------------------------------------------


def parse_directive_header(value: str | None) -> dict[str, Any]:
    """``parse_directive_header``: ``a, b=1, c="x"`` → {a: True, b: 1, c: '"x"'} (keys lower-cased)."""
    out: dict[str, Any] = {}
    if not value:
        return out
    for part in re.findall(r"[^,]+", value):
        m = re.match(r"^\s*([^=]+)(?:=(.+))?", part)
        if not m:
            continue
        name, arg = m.group(1).lower(), m.group(2)
        out[name] = _tonumber(arg) if arg is not None and _tonumber(arg) is not None else (arg if arg else True)
    return out


def _tonumber(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        try:
            return int(value.strip(), 16) if value.strip().lower().startswith("0x") else None
        except ValueError:
            return None
    return int(number) if number.is_integer() else number


def resource_ttl(cc: dict[str, Any], headers: Headers, now: float) -> float:
    max_age = cc.get("s-maxage", cc.get("max-age"))
    if not isinstance(max_age, int | float) or isinstance(max_age, bool):
        max_age = None
    if max_age is None:
        expires = headers.get_all("Expires")
        if expires:
            try:
                max_age = parsedate_to_datetime(expires[-1]).timestamp() - int(now)
            except (TypeError, ValueError, IndexError):
                max_age = None
    return max(max_age, 0) if max_age is not None else 0


def parse_mime_type(value: str) -> tuple[str | None, str | None, dict[str, str]]:
    """``kong.tools.mime_type.parse_mime_type``: (type, subtype, params), or (None, None, {}) if unparsable."""
    main, *params = value.split(";")
    main = main.strip()
    if "/" not in main:
        return None, None, {}
    typ, _, subtype = main.partition("/")
    if not typ or not subtype:
        return None, None, {}
    parsed = {}
    for p in params:
        k, eq, v = p.strip().partition("=")
        if k and eq:
            parsed[k.strip().lower()] = v.strip().strip('"')
    return typ.strip().lower(), subtype.strip().lower(), parsed


def content_type_matches(content_type: str, accepted: list[str]) -> bool:
    t, subtype, params = parse_mime_type(content_type)
    for expected in accepted:
        exp_type, exp_subtype, exp_params = parse_mime_type(expected)
        if exp_type is None:
            continue
        if (exp_type == "*" or t == exp_type) and (exp_subtype == "*" or subtype == exp_subtype):
            if all(params.get(k) == v for k, v in exp_params.items()) and len(params) == len(exp_params):
                return True
    return False


def _overwritable(name: str) -> bool:
    lname = name.lower()
    return lname not in HOP_BY_HOP and "ratelimit-remaining" not in lname


def _plugin_ctx(ctx, plugin: Plugin) -> dict[str, Any]:
    """``kong.ctx.plugin``: per request and plugin name, shared by its instances (Kong keys it by the handler,
    kong/init.lua:268, kong/pdk/ctx.lua:128-140)."""
    return ctx.__dict__.setdefault("_native_plugin_ctx", {}).setdefault(plugin.name, {})


class ProxyCache:
    """The native handler the `NativeRunner` calls."""

    runs_as = "natively in Python (kong_emulator.native.proxy_cache, strategy memory)"

    def __init__(self, clock=time.time) -> None:
        self.name = NAME
        self.info = info()
        self.clock = clock

    def startup_notes(self, plugin: Plugin) -> list[str]:
        notes = []
        if plugin.route_id is None and plugin.service_id is None:
            notes.append(
                "configured globally: every GET/HEAD of every route is cached; the cache key holds the Kong "
                "consumer but no other identity, so put it only on routes whose answers are not personal"
            )
        return notes

    def _set_header(self, conf: dict, ctx, out: Headers, name: str, value: str) -> None:
        if ctx.request.headers.get("Kong-Debug") is not None or (conf.get("response_headers") or {}).get(name):
            out.set(name, value)

    def run_phase(self, plugin: Plugin, phase: str, ctx, worker: int) -> None:
        if phase == "access":
            self.access(plugin, ctx)
        elif phase == "header_filter":
            self.header_filter(plugin, ctx, ctx.response.headers, ctx.response.status or 200)
        elif phase == "body_filter":
            arg = getattr(ctx, "body_filter_arg", None)
            if arg is None:  # a caller without chunks: the whole body at once
                body = ctx.response.body if ctx.response.body is not None else ctx.upstream_body
                self.body_filter(plugin, ctx, ctx.response.status or 200, body or b"", True)
            else:
                self.body_filter(plugin, ctx, ctx.response.status or 200, arg[0] or b"", bool(arg[1]))
        elif phase == "response":  # the emulator's whole-response step, for direct callers
            body = ctx.response.body if ctx.response.body is not None else ctx.upstream_body
            status = ctx.response.status or ctx.upstream_status or 200
            self.header_filter(plugin, ctx, ctx.response.headers, status)
            self.body_filter(plugin, ctx, status, body or b"", True)

    def exit_filter(self, plugin: Plugin, ctx, headers: Headers, exit_) -> None:
        """Both filters over a response Kong or a later plugin produced, for a proxy without filter phases."""
        if _plugin_ctx(ctx, plugin).get("proxy_cache") is None:
            return
        self.header_filter(plugin, ctx, headers, exit_.status)
        self.body_filter(plugin, ctx, exit_.status, exit_.body, True)

    # -- access -------------------------------------------------------------------------------------------------

    def access(self, plugin: Plugin, ctx) -> None:
        conf = plugin.config
        req = ctx.request
        out = ctx.response.headers
        cc = parse_directive_header(", ".join(req.headers.get_all("Cache-Control")) or None)
        refused = conf["cache_control"] and (cc.get("no-store") or cc.get("no-cache"))
        if req.method not in conf["request_method"] or refused:
            self._set_header(conf, ctx, out, "X-Cache-Status", "Bypass")
            return
        # ngx.var.request with "?.*" removed: "GET /p HTTP/1.1", or "GET /p" when there was a query string
        uri = f"{req.method} {req.raw_path}" + ("" if req.raw_query else f" HTTP/{req.http_version:.1f}")
        if conf.get("ignore_uri_case"):
            uri = uri.lower()
        key = build_cache_key(
            ctx.consumer.id if ctx.consumer else None,
            ctx.route.id if ctx.route else None,
            req.method,
            uri,
            _querystring(req.raw_query),
            req.headers,
            conf,
        )
        self._set_header(conf, ctx, out, "X-Cache-Key", key)
        store = store_for(conf["memory"]["dictionary_name"])
        pctx = _plugin_ctx(ctx, plugin)
        res, _err = store.fetch(key, self.clock())
        if res is None:
            if conf["cache_control"] and cc.get("only-if-cached"):
                ctx.exit = ExitResponse(504, b"", Headers([("Content-Length", "0")]), source="exit")
                ctx.response.source = "exit"
                return
            pctx["req_body"] = req.body
            return self._signal(conf, ctx, pctx, key, "Miss")
        if res.get("version") != CACHE_VERSION:
            store.purge(key)
            return self._signal(conf, ctx, pctx, key, "Bypass")
        now = int(self.clock())
        if _stale(conf, cc, now - res["timestamp"], res["ttl"]):
            return self._signal(conf, ctx, pctx, key, "Refresh")
        self._serve_hit(conf, ctx, res, now)

    def _serve_hit(self, conf: dict, ctx, res: dict, now: int) -> None:
        body = res["body"]
        shared_res = {k: v for k, v in res.items() if k not in ("headers", "body", "req_body")}
        ctx.shared["proxy_cache_hit"] = {
            "res": shared_res | {"headers": _header_map(res["headers"]), "body": _text(body)},
            "req": {"body": _text(res.get("req_body"))},
            "server_addr": "127.0.0.1",
        }
        headers = Headers()
        for name, value in res["headers"]:
            if _overwritable(name):
                headers.add(name, value)
        if (conf.get("response_headers") or {}).get("age"):
            headers.set("Age", str(math.floor(now - res["timestamp"])))
        if (conf.get("response_headers") or {}).get("X-Cache-Status"):
            headers.set("X-Cache-Status", "Hit")
        headers.set("Content-Length", str(len(body)))
        ctx.kong_proxied = True  # nctx.KONG_PROXIED = true: the proxied response headers (Via), not Kong's own
        ctx.exit = ExitResponse(res["status"], body, headers, source="exit")
        ctx.response.source = "exit"

    def _signal(self, conf: dict, ctx, pctx: dict, key: str, status: str) -> None:
        pctx["proxy_cache"] = {"cache_key": key}
        self._set_header(conf, ctx, ctx.response.headers, "X-Cache-Status", status)

    # -- header_filter / body_filter ----------------------------------------------------------------------------

    def header_filter(self, plugin: Plugin, ctx, out: Headers, status: int) -> None:
        pctx = _plugin_ctx(ctx, plugin)
        state = pctx.get("proxy_cache")
        if state is None:
            return
        conf = plugin.config
        cc = parse_directive_header(", ".join(out.get_all("Cache-Control")) or None)
        if self._cacheable_response(conf, cc, out, status):
            state["res_headers"] = out.items()
            state["res_ttl"] = resource_ttl(cc, out, self.clock()) if conf["cache_control"] else conf["cache_ttl"]
        else:
            self._set_header(conf, ctx, out, "X-Cache-Status", "Bypass")
            pctx["proxy_cache"] = None

    def _cacheable_response(self, conf: dict, cc: dict, out: Headers, status: int) -> bool:
        if status not in conf["response_code"]:
            return False
        content_types = out.get_all("Content-Type")
        if len(content_types) != 1 or not content_types[0]:
            return False
        if not content_type_matches(content_types[0], conf["content_type"]):
            return False
        if conf["cache_control"] and (cc.get("private") or cc.get("no-store") or cc.get("no-cache")):
            return False
        return not (conf["cache_control"] and resource_ttl(cc, out, self.clock()) <= 0)

    def body_filter(self, plugin: Plugin, ctx, status: int, chunk: bytes, eof: bool) -> None:
        """Chunks are gathered (``kong.response.get_raw_body()`` is nil until the last one); at eof, store."""
        pctx = _plugin_ctx(ctx, plugin)
        state = pctx.get("proxy_cache")
        if state is None or "res_headers" not in state:
            return
        state["res_body"] = state.get("res_body", b"") + (chunk or b"")
        if not eof:
            return
        body = state["res_body"]
        conf = plugin.config
        res = {
            "status": status,
            "headers": state["res_headers"],
            "body": body,
            "body_len": len(body),
            "timestamp": int(self.clock()),
            "ttl": state["res_ttl"],
            "version": CACHE_VERSION,
            "req_body": pctx.get("req_body"),
        }
        ttl = conf.get("storage_ttl") or (state["res_ttl"] if conf["cache_control"] else conf["cache_ttl"])
        store_for(conf["memory"]["dictionary_name"]).store(state["cache_key"], res, ttl, self.clock())
        pctx["proxy_cache"] = None


def _num(value: Any) -> float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _header_map(items: list[tuple[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in items:
        if name in out:
            prev = out[name]
            out[name] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            out[name] = value
    return out


def _text(data: bytes | None) -> str | None:
    """A Lua string as the PDK hands strings to plugins (undecodable bytes kept with surrogateescape)."""
    return data.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else data
