"""Who the caller is, as the gateway tells a backend: header names and roles.

sv-jwt verifies the token and sets the identity headers on the upstream request; sv-edge (a Kong Lua plugin) strips
every client-sent copy first (its ``strip_headers`` / ``strip_header_prefixes`` config, rendered into kong.yml from
these names). Backends trust these headers only because the gateway is the only way in.
"""

from __future__ import annotations

# token claim -> upstream header
IDENTITY_HEADERS = {
    "sub": "X-User-Id",
    "role": "X-User-Role",
    "family_id": "X-Family-Id",
    "tier": "X-Account-Tier",
    "content_rating": "X-Content-Rating",
}
IDENTITY_HEADER_PREFIX = "X-Sv-"  # every client header with this prefix is stripped too
REQUEST_ID_HEADER = "X-Request-Id"

PARENT, CHILD, ADMIN = "parent", "child", "admin"
ROLES = (PARENT, CHILD, ADMIN)
