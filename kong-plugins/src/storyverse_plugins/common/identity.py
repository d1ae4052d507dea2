"""How the verified identity travels: set by sv-jwt, read by sv-rbac and sv-quota, forwarded to backends.

`kong.ctx.shared` values are copied through MessagePack both ways (no shared reference): keep them plain.
"""

from __future__ import annotations

# kong.ctx.shared keys
SHARED_IDENTITY = "sv_identity"  # dict: sub, role, family_id, tier, tz, age_band, content_rating, jti, exp, scope
SHARED_AUTHENTICATED = "sv_authenticated"  # True once sv-jwt verified a token (read by the fail-closed guard)
SHARED_REQUEST_ID = "sv_request_id"

# Upstream identity headers, set only by the gateway; any client-sent copy is removed first.
IDENTITY_HEADERS = {
    "sub": "X-User-Id",
    "role": "X-User-Role",
    "family_id": "X-Family-Id",
    "tier": "X-Account-Tier",
    "content_rating": "X-Content-Rating",
}
IDENTITY_HEADER_PREFIX = "X-Sv-"  # every client header with this prefix is stripped too

# Redis key of a revoked access-token jti (written by the auth service on logout, read by sv-jwt)
REVOKED_JTI_KEY = "sv:revoked:jti:{jti}"
