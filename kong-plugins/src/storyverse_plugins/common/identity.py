"""How the verified identity travels: set by sv-jwt, read by sv-rbac and sv-quota, forwarded to backends.

`kong.ctx.shared` values are copied through MessagePack both ways (no shared reference): keep them plain.
"""

from __future__ import annotations

# kong.ctx.shared keys
# SHARED_IDENTITY is set by sv-jwt with ONE PDK call once a token is verified: a dict with
#   authenticated (True: sv-edge's guard checks this), sub, role, family_id, tier, exp, jti, and when present
#   tz, age_band, content_rating, scope, sid, plus the parental controls children, features, allowed_hours,
#   max_content_rating, daily_story_limit (see jwt_auth.gate.CONTROL_CLAIMS). Absent on a public route without a token.
#   With sv-jwt's `headers_in_guard`, the identity also carries what sv-edge (a Kong Lua plugin) applies to the
#   upstream request (zero PDK round trips): IDENTITY_UPSTREAM {header: value} to set; IDENTITY_CLEAR [names] of
#   client-sent identity headers is rarely non-empty, since sv-edge strips them in rewrite, before sv-jwt reads.
SHARED_IDENTITY = "sv_identity"
IDENTITY_UPSTREAM = "upstream"
IDENTITY_CLEAR = "clear"
SHARED_REQUEST_ID = "sv_request_id"

# Decision marks: sv-edge (kong-plugins/kong/plugins/sv-edge/, a Kong Lua plugin) answers 503 `plugin_unavailable`
# unless every security plugin the route requires left its mark, so a dead, hung or crashing plugin server (which
# Kong lets through: fail open) never becomes a pass. A plugin leaves its mark last, only when it lets the request
# through, folded into a kong.ctx.shared.set it makes anyway where it has one (a client cannot write ctx.shared):
#   sv-jwt        SHARED_IDENTITY with authenticated = True (its identity, as before)
#   sv-rbac       SHARED_RBAC = True
#   sv-quota      SHARED_QUOTA = {"ok": True, "headers": {response headers sv-edge sets}, "reservation": {...}}
#   sv-quota-log  SHARED_QUOTA_LOG = True (its access phase: the settling plugin server is up)
# sv-edge's handler.lua reads the same keys (MARKS there); tests/e2e/test_fail_closed_e2e.py proves each.
SHARED_RBAC = "sv_rbac"
SHARED_QUOTA = "sv_quota"
SHARED_QUOTA_LOG = "sv_quota_log"

# The upstream identity headers (set only by the gateway; any client-sent copy is removed first) are
# storyverse_contracts.identity; gateway-config (storyverse_gateway_config.kong) renders them into the global
# sv-edge's strip_headers. The Redis keys of revoked tokens and sessions are storyverse_contracts.keys.
