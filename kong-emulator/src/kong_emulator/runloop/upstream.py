"""Balancer + upstream call, as Kong builds it (`kong/runloop/handler.lua` before_proxy/ngx.balancer).

Upstream request headers: the client's (minus hop-by-hop), Host per preserve_host, `X-Forwarded-*` and
`X-Real-IP` with Kong's trusted-ips rule, `X-Kong-Request-Id`. Failures: connect → 502, timeout → 504,
no healthy target → 503, every one of them a Kong JSON error.
"""

from __future__ import annotations

import functools
import re
import time

import aiohttp

from kong_emulator import KONG_VERSION
from kong_emulator.runloop.context import Headers, RequestContext, wire_text
from kong_emulator.tools import kong_errors

DEFAULT_PORTS = {"http": 80, "https": 443}


# kong/tools/uri.lua:41 ESCAPE_PATTERN ("joi": case-insensitive)
_ESCAPE = re.compile(rb"[^!#$&'()*+,/:;=?@\[\]A-Za-z\d\-_.~%]")


def escape_uri(path: str) -> str:
    """uri.lua:66-75 ``escape``, applied to the upstream URI (handler.lua:1324): other bytes become %XX."""
    raw = path.encode("utf-8", "surrogateescape")
    return _ESCAPE.sub(lambda m: b"%%%02X" % m.group(0)[0], raw).decode("ascii")


def _join_query(path: str, raw_query: str) -> str:
    path = path if path.isascii() and path.isprintable() else escape_uri(path)
    return f"{path}?{raw_query}" if raw_query else path


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


def _pick_target(engine, ctx: RequestContext) -> tuple[str, int, object] | None:
    """(host, port, upstream-or-None). None when an upstream has no healthy target."""
    service = ctx.service
    up = ctx.upstream
    if up is not None and up.host:  # kong.service.set_target
        return up.host, up.port or DEFAULT_PORTS.get(up.scheme, 80), None
    upstream = engine.declarative.upstreams.get(service.host)
    if upstream is None:
        return service.host, service.port, None
    target = engine.balancer.pick(upstream.name)
    if target is None:
        return None
    return target.host, target.port or service.port, (upstream, target)


async def send(engine, ctx: RequestContext, t0: float):
    """Send the upstream request; on failure set `ctx.exit` to Kong's error and return None."""
    service, up = ctx.service, ctx.upstream
    picked = _pick_target(engine, ctx)
    if picked is None:
        # handler.lua access.after: `return kong.response.error(errcode, err)` when balancer_execute fails
        ctx.exit = kong_errors.runloop_error(ctx, 503, kong_errors.NO_PEER)
        return None
    host, port, balanced = picked
    headers = up.headers
    ops = []
    if not ctx.route.preserve_host or "Host" not in ctx.request.headers:
        default = DEFAULT_PORTS.get(up.scheme)
        ops.append(("Host", host if port == default else f"{host}:{port}"))
    ops += _forwarded_headers(engine, ctx)
    ops += _connection_headers(ctx)
    ops.append(("X-Kong-Request-Id", ctx.request_id if engine.upstream_request_id else None))  # headers_upstream
    headers.apply(ops)
    body = ctx.request.body if up.body is None else up.body
    ctx.upstream_uri = _join_query(up.path, up.raw_query)
    url = f"{up.scheme}://{_host_for_url(host)}:{port}{ctx.upstream_uri}"
    timeout = _timeout(service.connect_timeout, service.read_timeout)
    ctx.latencies["kong"] = int((time.monotonic() - t0) * 1000)
    sent = time.monotonic()
    ctx.nginx_ctx["tries"] = [{"ip": host, "port": port, "balancer_latency": 0}]
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
        ) as resp:
            payload = await resp.read()
            status, rheaders = resp.status, Headers.from_raw(resp.raw_headers)
    except TimeoutError:
        ctx.latencies["proxy"] = int((time.monotonic() - sent) * 1000)
        _report(engine, balanced, "timeout")
        ctx.exit = kong_errors.handler_error(ctx, 504, None, _default_type(engine))  # nginx 504 -> error_handlers
        return None
    except aiohttp.ClientError:
        ctx.latencies["proxy"] = int((time.monotonic() - sent) * 1000)
        _report(engine, balanced, "tcp")
        ctx.exit = kong_errors.handler_error(ctx, 502, None, _default_type(engine))  # nginx 502 -> error_handlers
        return None
    ctx.latencies["proxy"] = int((time.monotonic() - sent) * 1000)
    ctx.upstream_status = status
    _report(engine, balanced, status)
    if up.method != "HEAD":  # a HEAD answer has no body to measure: nginx passes the upstream's Content-Length
        rheaders.clear("Content-Length")
    return status, rheaders, payload


@functools.lru_cache(maxsize=256)
def _timeout(connect_ms: int, read_ms: int) -> aiohttp.ClientTimeout:
    """The service's timeouts as aiohttp's (an immutable value: one per pair of numbers)."""
    return aiohttp.ClientTimeout(sock_connect=connect_ms / 1000, sock_read=read_ms / 1000)


def upstream_session() -> aiohttp.ClientSession:
    """The HTTP client standing in for nginx's proxy module: a keep-alive pool without a limit, bodies passed as
    they come (no decompression), no cookie jar (nginx never stores an upstream's Set-Cookie, let alone sends it
    on another client's request) and none of aiohttp's default request headers (nginx adds no Accept,
    Accept-Encoding, User-Agent or Content-Type the client did not send)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=60),
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=_NOT_NGINX,
    )


_NOT_NGINX = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")


def _default_type(engine) -> str:
    return getattr(engine.conf, "raw", {}).get("error_default_type", "text/plain")


def _report(engine, balanced, outcome) -> None:
    if balanced is not None:
        upstream, target = balanced
        engine.balancer.report(upstream.name, target, outcome)


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
