"""Balancer + upstream call, as Kong builds it (`kong/runloop/handler.lua` before_proxy/ngx.balancer).

Upstream request headers: the client's (minus hop-by-hop), Host per preserve_host, `X-Forwarded-*` and
`X-Real-IP` with Kong's trusted-ips rule, `X-Kong-Request-Id`. Failures: connect → 502, timeout → 504,
no healthy target → 503, every one of them a Kong JSON error.
"""

from __future__ import annotations

import time

import aiohttp

from kong_emulator import kong_errors
from kong_emulator.context import Headers, RequestContext

DEFAULT_PORTS = {"http": 80, "https": 443}


def _join_query(path: str, raw_query: str) -> str:
    return f"{path}?{raw_query}" if raw_query else path


def _forwarded_headers(engine, ctx: RequestContext, headers: Headers) -> None:
    req = ctx.request
    trusted = engine.is_trusted(req.client_ip) if hasattr(engine, "is_trusted") else False
    xff = headers.get("X-Forwarded-For")
    headers.set("X-Real-IP", req.client_ip)
    headers.set("X-Forwarded-For", f"{xff}, {req.client_ip}" if xff else req.client_ip)
    if not trusted or "X-Forwarded-Proto" not in headers:
        headers.set("X-Forwarded-Proto", req.scheme)
    if not trusted or "X-Forwarded-Host" not in headers:
        headers.set("X-Forwarded-Host", req.host)
    if not trusted or "X-Forwarded-Port" not in headers:
        headers.set("X-Forwarded-Port", str(req.port))
    if not trusted or "X-Forwarded-Path" not in headers:
        headers.set("X-Forwarded-Path", req.raw_path)
    prefix = _stripped_prefix(ctx)
    if prefix and (not trusted or "X-Forwarded-Prefix" not in headers):
        headers.set("X-Forwarded-Prefix", prefix)
    elif not trusted:
        headers.clear("X-Forwarded-Prefix")


def _stripped_prefix(ctx: RequestContext) -> str | None:
    """Kong sets X-Forwarded-Prefix to what strip_path removed."""
    if ctx.route is None or not ctx.route.strip_path or ctx.upstream is None:
        return None
    raw = ctx.request.raw_path
    tail = ctx.upstream.path
    service_path = (ctx.service.path or "/") if ctx.service else "/"
    if tail.startswith(service_path.rstrip("/")):
        tail = tail[len(service_path.rstrip("/")) :] or "/"
    if raw.endswith(tail) and len(raw) > len(tail):
        return raw[: len(raw) - len(tail)] or None
    return None


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
        ctx.exit = kong_errors.kong_error(503, kong_errors.NO_PEER, ctx.request_id)
        return None
    host, port, balanced = picked
    headers = up.headers
    if not ctx.route.preserve_host or "Host" not in ctx.request.headers:
        default = DEFAULT_PORTS.get(up.scheme)
        headers.set("Host", host if port == default else f"{host}:{port}")
    _forwarded_headers(engine, ctx, headers)
    if engine.request_id_header:
        headers.set("X-Kong-Request-Id", ctx.request_id)
    body = ctx.request.body if up.body is None else up.body
    ctx.upstream_uri = _join_query(up.path, up.raw_query)
    url = f"{up.scheme}://{_host_for_url(host)}:{port}{ctx.upstream_uri}"
    timeout = aiohttp.ClientTimeout(sock_connect=service.connect_timeout / 1000, sock_read=service.read_timeout / 1000)
    ctx.latencies["kong"] = int((time.monotonic() - t0) * 1000)
    sent = time.monotonic()
    ctx.nginx_ctx["tries"] = [{"ip": host, "port": port, "balancer_latency": 0}]
    try:
        async with engine.session.request(
            up.method,
            url,
            headers=[(k, v) for k, v in headers.items() if k.lower() != "content-length"],
            data=body if body else None,
            timeout=timeout,
            allow_redirects=False,
            auto_decompress=False,
        ) as resp:
            payload = await resp.read()
            status, rheaders = (
                resp.status,
                Headers.from_pairs((k.decode("latin-1"), v.decode("latin-1")) for k, v in resp.raw_headers),
            )
    except TimeoutError:
        _report(engine, balanced, "timeout")
        ctx.exit = kong_errors.kong_error(504, kong_errors.GATEWAY_TIMEOUT, ctx.request_id)
        return None
    except aiohttp.ClientError:
        _report(engine, balanced, "tcp")
        ctx.exit = kong_errors.kong_error(502, kong_errors.BAD_GATEWAY, ctx.request_id)
        return None
    ctx.latencies["proxy"] = int((time.monotonic() - sent) * 1000)
    ctx.upstream_status = status
    _report(engine, balanced, status)
    rheaders.clear("Content-Length")
    return status, rheaders, payload


def _report(engine, balanced, outcome) -> None:
    if balanced is not None:
        upstream, target = balanced
        engine.balancer.report(upstream.name, target, outcome)


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
