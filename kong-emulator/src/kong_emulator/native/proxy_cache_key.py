"""kong/plugins/proxy-cache/cache_key.lua (Kong 3.9): the cache key of a request, as the native proxy-cache uses it."""

from __future__ import annotations

import hashlib
from typing import Any

from kong_emulator.runloop.context import Headers


def _generate_key_from(args: dict[str, Any], fields: list[str]) -> str:
    out = []
    for field in fields:
        arg = args.get(field)
        if arg is None or arg is False:
            continue
        if isinstance(arg, list):
            out.append(f"{field}=" + ",".join(sorted(str(a) for a in arg)))
        elif arg is True:
            out.append(field)
        else:
            out.append(f"{field}={arg}")
    return ":".join(out)


def build_cache_key(consumer_id, route_id, method: str, uri: str, query: dict, headers: Headers, conf: dict) -> str:
    """``cache_key.build_cache_key`` (3.9, sha256)."""
    if consumer_id and route_id:
        prefix = f"{consumer_id}:{route_id}"
    else:
        prefix = route_id or "default"
    vary_query = conf.get("vary_query_params") or []
    params = _generate_key_from(query, vary_query if vary_query else sorted(query))
    vary_headers = conf.get("vary_headers") or []
    if vary_headers:
        lowered = {k: (v[0] if len(v) == 1 else v) for k, v in headers.lower_multimap().items()}
        header_args = {f: lowered.get(f.lower().replace("_", "-")) for f in vary_headers}
        headers_part = _generate_key_from(header_args, vary_headers)
    else:
        headers_part = ""
    return hashlib.sha256(
        f"{prefix}|{method}|{uri}|{params}|{headers_part}".encode("utf-8", "surrogateescape")
    ).hexdigest()
