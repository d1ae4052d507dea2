"""How the verified identity travels: set by sv-jwt, read by sv-rbac and sv-quota, forwarded to backends.

`kong.ctx.shared` values are copied through MessagePack both ways (no shared reference): keep them plain.
"""

from __future__ import annotations

# kong.ctx.shared keys
# SHARED_IDENTITY is set by sv-jwt with ONE PDK call once a token is verified: a dict with
#   authenticated (True: the fail-closed guard checks this), sub, role, family_id, tier, exp, jti, and when present
#   tz, age_band, content_rating, scope, sid, plus the parental controls children, features, allowed_hours,
#   max_content_rating, daily_story_limit (see jwt_auth.gate.CONTROL_CLAIMS). Absent on a public route without a token.
#   With sv-jwt's `headers_in_guard`, the identity also carries what the Kong-native post-function applies to the
#   upstream request (zero PDK round trips): IDENTITY_UPSTREAM {header: value} to set and, when the client sent
#   identity headers, IDENTITY_CLEAR [names] to remove (kong-plugins/guard/).
SHARED_IDENTITY = "sv_identity"
IDENTITY_UPSTREAM = "upstream"
IDENTITY_CLEAR = "clear"
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

# Redis keys of revoked tokens and sessions: common/keys.py (revoked_jti_key, revoked_sid_key)
