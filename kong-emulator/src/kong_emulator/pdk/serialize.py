"""`kong.log.serialize()`: the record Kong's log plugins (file-log, http-log) write, from `kong/pdk/log.lua`."""

from __future__ import annotations

from typing import Any

from kong_emulator.runloop.context import Headers, RequestContext

# kong/pdk/log.lua redacts these request headers in serialize()
_REDACTED = ("authorization", "proxy-authorization")


def _headers(headers: Headers, redact: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, values in headers.lower_multimap().items():
        value: Any = values[0] if len(values) == 1 else values
        out[name] = "REDACTED" if redact and name in _REDACTED else value
    return out


def serialize(ctx: RequestContext, status: int, response_headers: Headers, response_size: int) -> dict[str, Any]:
    req = ctx.request
    query = f"?{req.raw_query}" if req.raw_query else ""
    url = f"{req.scheme}://{req.host}:{req.port}{req.raw_path}{query}"
    record: dict[str, Any] = {
        "request": {
            "uri": req.raw_path + query,
            "url": url,
            "querystring": _querystring(req.raw_query),
            "method": req.method,
            "headers": _headers(req.headers, redact=True),
            "size": len(req.body),
            "id": ctx.request_id,
        },
        "upstream_uri": ctx.upstream_uri or "",
        # kong/pdk/log.lua:906: var.upstream_status ("" when nothing was proxied: a plugin answered)
        "upstream_status": str(ctx.upstream_status) if ctx.upstream_status else "",
        "response": {
            "status": status,
            "headers": _headers(response_headers, redact=False),
            "size": response_size,
        },
        "latencies": {
            "kong": ctx.latencies.get("kong", 0),
            "proxy": ctx.latencies.get("proxy", -1),
            "request": ctx.latencies.get("request", 0),
            "receive": ctx.latencies.get("receive", 0),
        },
        "tries": ctx.nginx_ctx.get("tries", []),
        "client_ip": req.client_ip,
        "started_at": int(req.start_time * 1000),
        "source": ctx.response.source or "service",
        "workspace": "00000000-0000-4000-8000-000000000000",
        "workspace_name": "default",
    }
    if ctx.route is not None:
        record["route"] = ctx.route.to_kong()
    if ctx.service is not None:
        record["service"] = ctx.service.to_kong()
    if ctx.consumer is not None:
        record["consumer"] = ctx.consumer.to_kong()
    if ctx.credential is not None:
        record["authenticated_entity"] = {"id": ctx.credential.get("id")}
    return record


def _querystring(raw_query: str) -> dict[str, Any]:
    """ngx.req.get_uri_args(): repeated keys become lists, a bare key is `true`."""
    from urllib.parse import unquote_plus

    out: dict[str, Any] = {}
    for part in raw_query.split("&") if raw_query else []:
        if not part:
            continue
        key, eq, value = part.partition("=")
        key = unquote_plus(key, errors="surrogateescape")
        val: Any = unquote_plus(value, errors="surrogateescape") if eq else True
        if key in out:
            prev = out[key]
            out[key] = [*prev, val] if isinstance(prev, list) else [prev, val]
        else:
            out[key] = val
    return out
