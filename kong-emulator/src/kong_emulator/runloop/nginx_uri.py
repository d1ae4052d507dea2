"""nginx's `$uri` for a request path (ngx_http_parse_complex_uri): what the listener hands the rest of the runloop."""

from __future__ import annotations

import posixpath
from urllib.parse import unquote


def normalize_request_path(raw_path: str) -> str:
    """nginx's `$uri`: percent-decoded, slashes merged, dot segments resolved."""
    if raw_path[:1] == "/" and "%" not in raw_path and "//" not in raw_path and "/." not in raw_path:
        return raw_path  # nothing to decode, merge or resolve (the usual path)
    path = unquote(raw_path, errors="surrogateescape")  # nginx decodes to bytes, valid UTF-8 or not
    while "//" in path:
        path = path.replace("//", "/")
    norm = posixpath.normpath(path) if path else "/"
    if path.endswith("/") and norm != "/":
        norm += "/"
    return norm if norm.startswith("/") else "/" + norm
