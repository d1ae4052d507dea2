"""Balancer + upstream call, as Kong builds it (`kong/runloop/handler.lua` before_proxy/ngx.balancer).

Upstream request headers: the client's (minus hop-by-hop), Host per preserve_host, `X-Forwarded-*` and
`X-Real-IP` with Kong's trusted-ips rule, `X-Kong-Request-Id`. Failures: connect → 502, timeout → 504,
no healthy target → 503, every one of them a Kong JSON error.
"""

from __future__ import annotations

import functools
import logging
import re
import time

import aiohttp
from yarl import URL

from kong_emulator import KONG_VERSION
from kong_emulator.runloop.context import Headers, RequestContext, wire_text
from kong_emulator.runloop.upstream_ssl import UpstreamTLS, ssl_name
from kong_emulator.tools import kong_errors

DEFAULT_PORTS = {"http": 80, "https": 443}
log = logging.getLogger("kong_emulator.kong")


# kong/tools/uri.lua:41 ESCAPE_PATTERN ("joi": case-insensitive)
_ESCAPE = re.compile(rb"[^!#$&'()*+,/:;=?@\[\]A-Za-z\d\-_.~%]")


def escape_uri(path: str) -> str:
    """uri.lua:66-75 ``escape``, applied to the upstream URI (handler.lua:1324): other bytes become %XX."""
    raw = path.encode("utf-8", "surrogateescape")
    return _ESCAPE.sub(lambda m: b"%%%02X" % m.group(0)[0], raw).decode("ascii")


_ESCAPE_TEXT = re.compile(r"[^!#$&'()*+,/:;=?@\[\]A-Za-z\d\-_.~%]")


def _join_query(path: str, raw_query: str, question_mark: bool = False) -> str:
    """The upstream URI: the path escaped (handler.lua:1324, pdk/service/request.lua:145 set_path), the query as
    the client sent it (`var.args`), and a lone "?" kept (handler.lua:1386-1394)."""
    if _ESCAPE_TEXT.search(path):
        path = escape_uri(path)
    if raw_query and not raw_query.isascii():  # aiohttp writes the request line as UTF-8 only
        raw_query = wire_text(raw_query)
    return f"{path}?{raw_query}" if raw_query or question_mark else path


def _joined(headers: Headers, name: str) -> str | None:
    """nginx's `$http_<name>` (1.23+): every header whose name reads as <name> with '-' as '_' (`X_Forwarded_For`
    too: Kong serves `underscores_in_headers on`), repeats joined with ", "."""
    values = headers.var_values(name.lower().replace("-", "_"))
    return ", ".join(values) if values else None


def _forwarded_headers(engine, ctx: RequestContext) -> list[tuple[str, str | None]]:
    """kong/runloop/handler.lua access.before + the `proxy_set_header` lines of kong/templates/nginx_kong.lua, as
    `Headers.apply` operations.

    Trust is decided on `$realip_remote_addr` (the peer). From a trusted peer the client's X-Forwarded-Proto/
    -Host/-Port/-Path/-Prefix are kept, otherwise Kong's own values replace them. X-Forwarded-For appends the
    peer to the client's list, or is `$remote_addr` (after the realip module) when the client sent none.
    X-Real-IP is `$remote_addr`. X-Forwarded-Prefix is the path strip_path removed (`match_t.prefix`), and is
    not sent at all when empty (an empty `proxy_set_header` value drops the header).
    """
    req = ctx.request
    src = req.headers
    trusted = engine.is_trusted(req.client_ip) if hasattr(engine, "is_trusted") else False
    forwarded_path = forwarded_prefix = None
    if trusted:
        forwarded_proto = _joined(src, "X-Forwarded-Proto") or req.scheme
        forwarded_host = _joined(src, "X-Forwarded-Host") or req.host
        forwarded_port = _joined(src, "X-Forwarded-Port") or str(req.port)
        forwarded_path = _joined(src, "X-Forwarded-Path")
        forwarded_prefix = _joined(src, "X-Forwarded-Prefix")
    else:
        forwarded_proto, forwarded_host, forwarded_port = req.scheme, req.host, str(req.port)
    if not forwarded_path:
        forwarded_path = req.raw_path  # ctx.request_uri up to the "?"
    if not forwarded_prefix:
        prefix = _stripped_prefix(ctx)
        forwarded_prefix = prefix if prefix != "/" else None
    xff = _joined(src, "X-Forwarded-For")
    # 3.x `var.upstream_via`: the client's Via, then `<http version> kong/<version>`
    req_via = _joined(src, "Via")
    version = f"{req.http_version:g}"  # Lua tostring(ngx.req.http_version()): 1.1 -> "1.1", 1.0 -> "1"
    kong_via = f"{version} kong/{KONG_VERSION}"
    return [
        ("X-Forwarded-For", f"{xff}, {req.client_ip}" if xff else req.forwarded_ip),
        ("X-Forwarded-Proto", forwarded_proto),
        ("X-Forwarded-Host", forwarded_host),
        ("X-Forwarded-Port", forwarded_port),
        ("X-Forwarded-Path", forwarded_path),
        ("X-Forwarded-Prefix", forwarded_prefix or None),  # None: not sent
        ("X-Real-IP", req.forwarded_ip),
        ("Via", f"{req_via}, {kong_via}" if req_via else kong_via),
    ]


def _connection_headers(ctx: RequestContext) -> list[tuple[str, str | None]]:
    """handler.lua access.after and nginx's proxy defaults for connection-level request headers (`Headers.apply`
    operations)."""
    ops: list[tuple[str, str | None]] = []
    src = ctx.request.headers
    connection = src.get("Connection")
    if connection is not None and connection not in ("keep-alive", "close", "upgrade"):
        for name in (t.strip().lower() for t in connection.split(",")):
            if name and name != "upgrade":  # upgrade is only kept for websockets, which we do not proxy
                ops.append((name, None))
    # nginx_kong.lua sets TE/Upgrade from $upstream_te/$upstream_upgrade, empty = dropped
    ops += _DROPPED
    te = src.get("TE")
    if te is not None and "trailers" in (t.strip() for t in te.split(",")):
        ops.append(("TE", "trailers"))
    ops.append(("Connection", "keep-alive"))  # $upstream_connection
    return ops


_DROPPED = [(name, None) for name in ("Proxy", "Proxy-Connection", "Keep-Alive", "Expect", "Upgrade", "TE")]


def _stripped_prefix(ctx: RequestContext) -> str | None:
    """`match_t.prefix`: the path strip_path removed (the route's prefix, or a regex path's whole match)."""
    if ctx.route is None or not ctx.route.strip_path:
        return None
    return getattr(ctx, "router_prefix", None)  # set by proxy.Proxy._bind_route from the router's match


async def _pick_target(engine, ctx: RequestContext) -> tuple[str, int, str, object] | None:
    """(address to connect to, port, host name for the Host header, upstream-or-None); None when there is no
    peer: an upstream with no healthy target, or a name that resolves to nothing (runloop/dns.py)."""
    service = ctx.service
    up = ctx.upstream
    if up is not None and up.host:  # kong.service.set_target
        host, port, balanced = up.host, up.port or DEFAULT_PORTS.get(up.scheme, 80), None
    else:
        upstream = engine.declarative.upstreams.get(service.host)
        if upstream is None:
            host, port, balanced = service.host, service.port, None
        else:
            target = engine.balancer.pick(upstream.name)
            if target is None:
                return None
            host, port, balanced = target.host, target.port or service.port, (upstream, target)
    resolver = getattr(engine, "resolver", None)
    address = await resolver.address(host) if resolver is not None else host
    if address is None:
        return None
    if balanced is not None and balanced[0].host_header is not None:  # balancer/init.lua:395-399
        host = balanced[0].host_header
    return address, port, host, balanced


# nginx (proxy_next_upstream): a request already sent is passed to the next server only if its method is idempotent
NON_IDEMPOTENT = frozenset({"POST", "LOCK", "PATCH"})


class _Failed(Exception):
    """One try that failed: `kind` is the passive-check event ("tcp"/"timeout"), `sent` whether the request left."""

    def __init__(self, kind: str, sent: bool) -> None:
        self.kind, self.sent = kind, sent


async def send(engine, ctx: RequestContext, t0: float):
    """Send the upstream request; on failure set `ctx.exit` to Kong's error and return None.

    Tries: kong/init.lua:1370-1375 `set_more_tries(service.retries)` on the first try; nginx's default
    `proxy_next_upstream error timeout` moves a failed connect, TLS handshake, send or header read to the next try --
    except a non-idempotent request already sent. Each retry asks the balancer again (init.lua:1313-1339: the failed
    try reported as a timeout or TCP failure, then `balancer.execute`, then the Host header set for the new target).
    """
    service, up = ctx.service, ctx.upstream
    body = ctx.request.body if up.body is None else up.body
    ctx.upstream_uri = _join_query(up.path, up.raw_query, ctx.request.request_uri.endswith("?"))
    ctx.latencies["kong"] = int((time.monotonic() - t0) * 1000)
    tries: list[dict] = []
    ctx.nginx_ctx["tries"] = tries
    sent_at = time.monotonic()
    failure = None
    for _ in range(max(service.retries, 0) + 1):
        picked = await _pick_target(engine, ctx)
        if picked is None:
            # handler.lua access.after / init.lua:1341-1352: `kong.response.error(errcode, err)` / ngx.exit(503)
            ctx.exit = kong_errors.runloop_error(ctx, 503, kong_errors.NO_PEER)
            return None
        address, port, host, balanced = picked
        if tries:  # init.lua:1313-1316: the previous try's failure, as get_last_failure() gives it
            tries[-1].update(state="failed", code=504 if failure.kind == "timeout" else 502)
        tries.append({"ip": address, "port": port, "balancer_latency": 0})
        try:
            status, rheaders, payload = await _try(engine, ctx, address, port, host, body)
        except _Failed as exc:
            failure = exc
            _report(engine, balanced, exc.kind)
            if exc.sent and up.method in NON_IDEMPOTENT:
                break
            continue
        ctx.latencies["proxy"] = int((time.monotonic() - sent_at) * 1000)
        ctx.upstream_status = status
        _report(engine, balanced, status)
        return status, rheaders, payload
    ctx.latencies["proxy"] = int((time.monotonic() - sent_at) * 1000)
    status = 504 if failure.kind == "timeout" else 502  # nginx's answer after the last try -> error_handlers
    ctx.exit = kong_errors.handler_error(ctx, status, _default_type(engine))
    return None


async def _try(engine, ctx: RequestContext, address: str, port: int, host: str, body: bytes):
    """One try against address:port (`host` names it in the Host header and TLS); raises `_Failed`."""
    service, up = ctx.service, ctx.upstream
    headers = _request_headers(engine, ctx, host, port)
    url = URL(f"{up.scheme}://{_host_for_url(address)}:{port}{ctx.upstream_uri}", encoded=True)
    timeout = _timeout(service.connect_timeout, service.read_timeout)
    tls = {}
    if up.scheme == "https":
        tls = {"ssl": engine_tls(engine).context_for(service), "server_hostname": ssl_name(headers.get("Host") or host)}
    try:
        async with engine.session.request(
            up.method,
            url,
            headers=[
                (k if k.isascii() else wire_text(k), v if v.isascii() else wire_text(v))
                for lk, (k, v) in zip(headers.lower_names(), headers.items(), strict=True)
                if lk != "content-length"
            ],
            data=body if body else None,
            timeout=timeout,
            allow_redirects=False,
            auto_decompress=False,
            **tls,
        ) as resp:
            payload = await resp.read()
            status, rheaders = resp.status, Headers.from_raw(resp.raw_headers)
    except aiohttp.ConnectionTimeoutError:
        raise _Failed("timeout", sent=False) from None
    except TimeoutError:  # aiohttp's read timeout: the request was sent
        raise _Failed("timeout", sent=True) from None
    except aiohttp.ClientConnectorError as exc:  # refused, unreachable, TLS handshake or verification
        if isinstance(exc, aiohttp.ClientSSLError):
            log.error("upstream SSL handshake to %s (%s:%d) failed: %s", host, address, port, exc)
        raise _Failed("tcp", sent=False) from None
    except aiohttp.ClientError:
        raise _Failed("tcp", sent=True) from None
    if up.method != "HEAD":  # a HEAD answer has no body to measure: nginx passes the upstream's Content-Length
        rheaders.clear("Content-Length")
    return status, rheaders, payload


def _request_headers(engine, ctx: RequestContext, host: str, port: int) -> Headers:
    """The upstream request's headers for this try (the Host header follows the target, init.lua:1354-1364)."""
    up = ctx.upstream
    headers = up.headers
    ops = []
    if not ctx.route.preserve_host or "Host" not in ctx.request.headers:
        default = DEFAULT_PORTS.get(up.scheme)
        ops.append(("Host", host if port == default else f"{host}:{port}"))
    ops += _forwarded_headers(engine, ctx)
    ops += _connection_headers(ctx)
    ops.append(("X-Kong-Request-Id", ctx.request_id if engine.upstream_request_id else None))  # headers_upstream
    headers.apply(ops)
    return headers


@functools.lru_cache(maxsize=256)
def _timeout(connect_ms: int, read_ms: int) -> aiohttp.ClientTimeout:
    """The service's timeouts as aiohttp's (an immutable value: one per pair of numbers)."""
    return aiohttp.ClientTimeout(sock_connect=connect_ms / 1000, sock_read=read_ms / 1000)


def upstream_session() -> aiohttp.ClientSession:
    """The HTTP client standing in for nginx's proxy module: a keep-alive pool without a limit, bodies passed as
    they come (no decompression), no cookie jar (nginx never stores an upstream's Set-Cookie, let alone sends it
    on another client's request) and none of aiohttp's default request headers (nginx adds no Accept,
    Accept-Encoding, User-Agent or Content-Type the client did not send). TLS is per request: `_try` passes the
    service's context (upstream_ssl.UpstreamTLS) and SNI, both part of aiohttp's pool key, so a kept-alive
    connection is only reused for the same verification and name."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=60),
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=_NOT_NGINX,
    )


_NOT_NGINX = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")


def engine_tls(engine) -> UpstreamTLS:
    tls = getattr(engine, "upstream_tls", None)
    if tls is None:
        raw = getattr(engine.conf, "raw", {}) if engine.conf is not None else {}
        tls = engine.upstream_tls = UpstreamTLS(raw, getattr(engine.declarative, "ca_certificates", {}))
    return tls


def _default_type(engine) -> str:
    return getattr(engine.conf, "raw", {}).get("error_default_type", "text/plain")


def _report(engine, balanced, outcome) -> None:
    if balanced is not None:
        upstream, target = balanced
        engine.balancer.report(upstream.name, target, outcome)


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
