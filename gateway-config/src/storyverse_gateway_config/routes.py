"""The public API of the StoryVerse gateway as data: every routed endpoint, its service, roles and limits.

`storyverse_gateway_config.kong` renders this table into `kong.yml` (format 3.0), `storyverse_gateway_config.api_table`
into the route table of `docs/api.md` and `storyverse_gateway_config.openapi` into the OpenAPI document; `tests/config/`
checks the result. Nothing that is not listed here is routed (Kong answers 404).

Paths are written after `/api/<version>` (or absolutely, for the unversioned discovery, JWKS and OAuth endpoints)
as regexes: ids are matched exactly (`[0-9]+` for the backends' numeric ids, a UUID for the auth service's), so an
unlisted path never reaches a backend. Named captures (`story_id`, `child_id`, `kind`) feed sv-rbac.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from storyverse_plans import DEFAULT_PLANS

NUMERIC_ID = "[0-9]+"
UUID = "[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
GENERATION_KINDS = ("text", "image", "audio")

PARENT, CHILD, ADMIN = "parent", "child", "admin"
FAMILY = (PARENT, CHILD)
ANYONE_SIGNED_IN = (PARENT, CHILD, ADMIN)

# The daily tier quota (docs/architecture.md §5): one shared counter per family and local day, charged by story
# creation and generation only. Basic 5/day, premium 20/day plus a burst of 5 on its per-user rate limits. The plans
# come from the one source the sv-quota plugin and the rate limiting service share (plans/: storyverse_plans).
PLANS = tuple(plan.as_config() for plan in DEFAULT_PLANS)
# API-key tokens carry the family's tier (a parent's `family` key) or the key's partner plan as their `tier` (auth
# service: apikeys/service.py; only administrators assign partner plans): the partner plans in storyverse_plans
# meter high-volume integrations.

# Age gates (sv-rbac, children only; docs/api.md "Age gates"). Writing and generating are for children who read:
# band 6-9 and older. Generated content is shown unreviewed, so it also needs a rating of at least TV-Y7: a child
# held to TV-Y (bands 0-5 by default, or capped by a parent) gets the family's reviewed stories only. Reading the
# catalogue has no gate: backends hide each record rated above the child's X-Content-Rating
# (docs/backend-contract.md).
WRITER_AGE = {"min_age_band": "6-9"}
GENERATION_AGE = {**WRITER_AGE, "min_content_rating": "TV-Y7"}


@dataclass(frozen=True)
class Endpoint:
    """One route: `methods` on `path` → `service`. Public when `roles` is empty (sv-jwt anonymous, IP limits)."""

    name: str
    methods: tuple[str, ...]
    path: str
    service: str
    summary: str
    roles: tuple[str, ...] = ()
    limits: tuple[tuple[int, str], ...] = ((60, "minute"),)
    seed: bool = False  # one of the 16 endpoints of the product seed
    daily_quota: bool = False  # charged against the daily story quota (sv-quota `quota`)
    rbac: dict[str, Any] = field(default_factory=dict)  # extra sv-rbac config (owned_captures, kind_capture, ...)
    versioned: bool = True  # False: an absolute path outside /api/<version> (discovery, JWKS, docs)
    extra_plugins: tuple[dict[str, Any], ...] = ()  # more route plugins, e.g. {"name": "sv-expand", "config": {...}}
    cache: bool = False  # proxy-cache (CACHE below): only for answers that are the same for every caller
    served: str | None = None  # answered by the gateway itself (sv-edge `serve`), never proxied: "openapi" | "docs"
    protocol_errors: bool = False  # the upstream's own error format passes through (OAuth 2.1: RFC 6749 §5.2)
    abuse: bool = True  # sv-quota abuse strikes and blocks; off where a blocked shared IP (NAT, school) must get in

    @property
    def public(self) -> bool:
        return not self.roles


def _child(name: str, methods: tuple[str, ...], path: str, summary: str, limit: int) -> Endpoint:
    """A child-management route of the auth service: parents only, and only their own family's children."""
    owned = {"owned_captures": [{"name": "child_id", "kind": "child"}]} if "child_id" in path else {}
    return Endpoint(name, methods, path, "auth", summary, (PARENT,), ((limit, "minute"),), rbac=owned)


CHILD_PATH = f"/auth/children/(?<child_id>{UUID})"
STORY_PATH = f"/stories/(?<story_id>{NUMERIC_ID})"

# sv-expand on the story item: characters and universe composed in one response (backends see unversioned paths)
EXPAND: dict[str, Any] = {
    "name": "sv-expand",
    "config": {
        "envelope_field": "item",
        "budget_ms": 300,
        "timeout_ms": 250,
        "max_ids": 25,
        "expansions": [
            {"name": "characters", "id_field": "character_ids", "url": "<service:characters>/api/characters"},
            {"name": "universe", "id_field": "universe_id", "url": "<service:universes>/api/universes"},
        ],
    },
}

SEED: tuple[Endpoint, ...] = (
    # -- auth (public: sv-jwt anonymous, limited per client IP) ----------------------------------------------------
    Endpoint("auth-register", ("POST",), "/auth/register", "auth", "Register a parent and a new family",
             limits=((5, "minute"), (20, "hour")), seed=True),
    Endpoint("auth-login", ("POST",), "/auth/login", "auth", "Sign in with e-mail and password",
             limits=((10, "minute"), (100, "hour")), seed=True),
    Endpoint("auth-refresh", ("POST",), "/auth/refresh", "auth", "Rotate a refresh token",
             limits=((30, "minute"),), seed=True, abuse=False),
    Endpoint("auth-logout", ("POST",), "/auth/logout", "auth", "Sign out (this session, others, or all)",
             ANYONE_SIGNED_IN, ((30, "minute"),), seed=True, rbac={"enforce_hours": False}),
    # -- stories ---------------------------------------------------------------------------------------------------
    Endpoint("stories-list", ("GET",), "/stories", "stories", "List the family's stories",
             FAMILY, ((120, "minute"),), seed=True),
    Endpoint("stories-create", ("POST",), "/stories", "stories", "Create a story",
             FAMILY, ((20, "minute"),), seed=True, daily_quota=True, rbac=WRITER_AGE),
    Endpoint("stories-get", ("GET",), STORY_PATH, "stories", "Read one story (?expand=characters,universe)",
             FAMILY, ((240, "minute"),), seed=True, extra_plugins=(EXPAND,)),
    Endpoint("stories-update", ("PUT", "PATCH"), STORY_PATH, "stories", "Update a story (parents only)",
             (PARENT,), ((60, "minute"),), seed=True),
    Endpoint("stories-delete", ("DELETE",), STORY_PATH, "stories", "Delete a story (parents only)",
             (PARENT,), ((30, "minute"),), seed=True),
    # -- characters --------------------------------------------------------------------------------------------------
    Endpoint("characters-list", ("GET",), "/characters", "characters", "List characters",
             FAMILY, ((120, "minute"),), seed=True, cache=True),
    Endpoint("characters-create", ("POST",), "/characters", "characters", "Create a character (parents only)",
             (PARENT,), ((30, "minute"),)),
    Endpoint("characters-get", ("GET",), f"/characters/(?<character_id>{NUMERIC_ID})", "characters",
             "Read one character", FAMILY, ((240, "minute"),), seed=True, cache=True),
    # -- universes ---------------------------------------------------------------------------------------------------
    Endpoint("universes-list", ("GET",), "/universes", "universes", "List story universes",
             FAMILY, ((120, "minute"),), seed=True, cache=True),
    Endpoint("universes-create", ("POST",), "/universes", "universes", "Create a universe (parents only)",
             (PARENT,), ((30, "minute"),)),
    Endpoint("universes-get", ("GET",), f"/universes/(?<universe_id>{NUMERIC_ID})", "universes",
             "Read one universe", FAMILY, ((240, "minute"),), seed=True, cache=True),
    # -- generation: one endpoint for the three kinds; sv-rbac reads the kind from the `kind` capture ----------------
    Endpoint("generate", ("POST",), f"/generate/(?<kind>{'|'.join(GENERATION_KINDS)})", "generation",
             "Generate story text, an image or audio", FAMILY, ((10, "minute"), (60, "hour")), seed=True,
             daily_quota=True, rbac={"kind_capture": "kind", **GENERATION_AGE}),
)  # fmt: skip

AUTH_SERVICE: tuple[Endpoint, ...] = (
    Endpoint("auth-me", ("GET",), "/auth/me", "auth", "The caller's account and family", ANYONE_SIGNED_IN),
    Endpoint("auth-sessions-list", ("GET",), "/auth/sessions", "auth", "The caller's live sessions", ANYONE_SIGNED_IN),
    Endpoint("auth-sessions-revoke", ("DELETE",), f"/auth/sessions/(?<session_id>{UUID})", "auth",
             "Revoke one of the caller's sessions", (PARENT, ADMIN), ((30, "minute"),)),
    Endpoint("auth-password-forgot", ("POST",), "/auth/password/forgot", "auth", "Mail a password-reset link",
             limits=((5, "minute"), (20, "hour"))),
    Endpoint("auth-password-reset", ("POST",), "/auth/password/reset", "auth", "Set a new password with a reset token",
             limits=((10, "minute"),)),
    Endpoint("auth-password-change", ("POST",), "/auth/password/change", "auth", "Change the caller's password",
             (PARENT, ADMIN), ((5, "minute"),)),
    Endpoint("auth-family-get", ("GET",), "/auth/family", "auth", "The caller's family (parents only)", (PARENT,)),
    # served by the rate limiting service since usage moved there; the public path is unchanged
    Endpoint("auth-usage", ("GET",), "/auth/usage", "rate-limiting", "The family's story usage and what is left today",
             (PARENT,), ((60, "minute"),)),
    Endpoint("auth-family-invite", ("POST",), "/auth/family/invitations", "auth", "Invite a co-parent",
             (PARENT,), ((10, "hour"),)),
    Endpoint("auth-family-join", ("POST",), "/auth/family/join", "auth",
             "Accept a co-parent invitation (the invitation token authenticates)", limits=((10, "minute"),)),
    _child("auth-children-list", ("GET",), "/auth/children", "The family's child profiles", 60),
    _child("auth-children-create", ("POST",), "/auth/children", "Create a child profile", 10),
    _child("auth-child-get", ("GET",), CHILD_PATH, "One child profile", 120),
    _child("auth-child-update", ("PATCH",), CHILD_PATH, "Update a child profile and its controls", 30),
    _child("auth-child-delete", ("DELETE",), CHILD_PATH, "Delete a child profile and its data", 10),
    _child("auth-child-pin", ("PUT",), f"{CHILD_PATH}/pin", "Set the child's PIN", 10),
    _child("auth-child-consent", ("POST",), f"{CHILD_PATH}/consent", "Record parental consent", 10),
    _child("auth-child-sessions", ("GET", "DELETE"), f"{CHILD_PATH}/sessions", "List or end the child's sessions", 30),
    Endpoint("auth-child-login", ("POST",), "/auth/child/login", "auth", "A child signs in (family code + PIN)",
             limits=((10, "minute"), (100, "hour"))),
    Endpoint("auth-device-code", ("POST",), "/auth/device/code", "auth", "Start a device sign-in (RFC 8628)",
             limits=((10, "minute"),)),
    Endpoint("auth-device-token", ("POST",), "/auth/device/token", "auth", "Poll a device sign-in for its tokens",
             limits=((30, "minute"),)),
    Endpoint("auth-device-approve", ("POST",), "/auth/device/approve", "auth", "A parent approves a device",
             (PARENT,), ((20, "minute"),)),
    Endpoint("auth-device-deny", ("POST",), "/auth/device/deny", "auth", "A parent denies a device",
             (PARENT,), ((20, "minute"),)),
    # -- issue 20: plans and the billing provider's webhook (signed; the service checks the signature) --------------
    Endpoint("auth-family-plan", ("GET", "POST"), "/auth/family/plan", "auth",
             "The family's plan; ask to change it (parents only)", (PARENT,), ((30, "minute"),)),
    Endpoint("auth-billing-webhook", ("POST",), "/auth/billing/webhook", "auth",
             "Billing provider events (HMAC-signed, replay-protected)", limits=((300, "minute"),)),
    # -- issue 20: e-mail verification (the link's token authenticates; resend is throttled by the service too) -----
    Endpoint("auth-email-verify", ("POST",), "/auth/email/verify", "auth",
             "Confirm the e-mail address with the mailed token", limits=((10, "minute"),)),
    Endpoint("auth-email-resend", ("POST",), "/auth/email/verification", "auth",
             "Mail a new confirmation link", (PARENT, ADMIN), ((5, "minute"),)),
    # -- issue 20: parent MFA (TOTP + recovery codes; the service throttles codes like passwords) --------------------
    Endpoint("auth-mfa-status", ("GET",), "/auth/mfa", "auth", "The parent's second factors", (PARENT,)),
    Endpoint("auth-mfa-totp", ("POST", "DELETE"), "/auth/mfa/totp", "auth",
             "Set up or remove an authenticator app", (PARENT,), ((10, "minute"),)),
    Endpoint("auth-mfa-totp-confirm", ("POST",), "/auth/mfa/totp/confirm", "auth",
             "Confirm the authenticator app with a first code", (PARENT,), ((10, "minute"),)),
    Endpoint("auth-mfa-verify", ("POST",), "/auth/mfa/verify", "auth",
             "Step up: check a second-factor code for this session", (PARENT,), ((10, "minute"),)),
    Endpoint("auth-mfa-recovery-codes", ("POST",), "/auth/mfa/recovery-codes", "auth",
             "Replace the recovery codes", (PARENT,), ((5, "minute"),)),
    # -- issue 20: privacy (consent withdrawal, the family's export, account deletion with a grace period) ----------
    _child("auth-consent-withdraw", ("DELETE",), f"{CHILD_PATH}/consent", "Withdraw parental consent", 10),
    Endpoint("auth-account-export", ("GET",), "/auth/account/export", "auth", "The family's data as JSON",
             (PARENT,), ((10, "minute"),)),
    Endpoint("auth-account-deletion", ("POST", "DELETE"), "/auth/account/deletion", "auth",
             "Delete the parent's account after a grace period, or cancel", (PARENT,), ((5, "minute"),)),
    # -- API keys (auth service: apikeys/): parents and admins manage their own keys; the auth service decides who
    # may take which plan. The exchange is public for sv-jwt: the key itself (`Authorization: ApiKey svk_...`, not a
    # bearer token) authenticates to the auth service, limited per IP.
    Endpoint("auth-api-keys", ("GET", "POST"), "/auth/api-keys", "auth", "List or issue the caller's API keys",
             (PARENT, ADMIN), ((30, "minute"),)),
    Endpoint("auth-api-key-revoke", ("DELETE",), f"/auth/api-keys/(?<key_id>{UUID})", "auth",
             "Revoke one of the caller's API keys and its tokens", (PARENT, ADMIN), ((30, "minute"),)),
    Endpoint("auth-api-key-token", ("POST",), "/auth/api-keys/token", "auth",
             "Exchange an API key (Authorization: ApiKey svk_...) for a short-lived access token",
             limits=((30, "minute"),)),
    # A parent's key is metered by the family's own plan (`family`); only an administrator assigns a partner plan.
    Endpoint("auth-admin-api-key-plan", ("PUT",), f"/auth/admin/api-keys/(?<key_id>{UUID})/plan", "auth",
             "Assign an API key's metering plan (administrators)", (ADMIN,), ((30, "minute"),)),
    # -- unversioned: standard locations (the issuer's discovery document, its JWKS) ----------------------------------
    Endpoint("discovery", ("GET",), "/.well-known/openid-configuration", "auth", "OpenID discovery document",
             limits=((120, "minute"),), versioned=False, abuse=False),
    Endpoint("jwks", ("GET",), "/.well-known/jwks.json", "auth", "The token-signing public keys (JWKS)",
             limits=((120, "minute"),), versioned=False, abuse=False),
)  # fmt: skip

# The OAuth 2.1 / OpenID Connect provider (auth-service/src/storyverse_auth/oauth/), unversioned like /.well-known
# (the discovery document names these URLs). Public for sv-jwt (clients authenticate to the provider itself: PKCE,
# client_secret_basic, or the access token at userinfo); limited per IP. Their errors are OAuth's (`error`,
# `error_description`, RFC 6749 §5.2 / RFC 6750 §3), which OAuth client libraries parse: they pass through as the
# provider wrote them; the gateway's own errors (429, 502, 504, ...) stay RFC 9457 problem documents.
OAUTH: tuple[Endpoint, ...] = (
    Endpoint("oauth-authorize", ("GET", "POST"), "/oauth/authorize", "auth",
             "OAuth authorization: the parent signs in and approves the app (PKCE)",
             limits=((20, "minute"), (200, "hour")), versioned=False, protocol_errors=True),
    Endpoint("oauth-token", ("POST",), "/oauth/token", "auth", "OAuth token endpoint (code and refresh grants)",
             limits=((60, "minute"),), versioned=False, protocol_errors=True),
    Endpoint("oauth-revoke", ("POST",), "/oauth/revoke", "auth", "Revoke an OAuth token (RFC 7009)",
             limits=((30, "minute"),), versioned=False, protocol_errors=True),
    Endpoint("oauth-introspect", ("POST",), "/oauth/introspect", "auth", "Introspect an OAuth token (RFC 7662)",
             limits=((120, "minute"),), versioned=False, protocol_errors=True),
    Endpoint("oauth-userinfo", ("GET", "POST"), "/oauth/userinfo", "auth", "OpenID Connect UserInfo",
             limits=((60, "minute"),), versioned=False, protocol_errors=True),
)  # fmt: skip

# The public API documentation, answered by the gateway itself from docs/openapi/ (written by
# storyverse_gateway_config.openapi): no service is called, no token needed. Attached to the auth service only
# because a Kong route needs one.
DOCS: tuple[Endpoint, ...] = (
    Endpoint("openapi", ("GET",), "/openapi.json", "auth", "This OpenAPI 3.1 document (served by the gateway)",
             limits=((60, "minute"),), served="openapi"),
    Endpoint("api-docs", ("GET",), "/docs", "auth", "Browsable API docs (served by the gateway)",
             limits=((60, "minute"),), served="docs"),
)  # fmt: skip

# The rate limiting service's admin API (rate-limiting-service/): usage export for billing, grants, abuse blocks,
# special occasions, plans. Administrators only (sv-rbac; the service re-verifies the token and the account's role).
BLOCK_ID = "[A-Za-z0-9_-]{8,400}"  # base64url of an sv-quota abuse key
OCCASION = "[0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{2}-[0-9]{2}"
RATE_LIMITING: tuple[Endpoint, ...] = (
    Endpoint("rate-limits-usage", ("GET",), "/rate-limits/usage", "rate-limiting",
             "Export synced daily usage for billing (JSON or CSV)", (ADMIN,), ((30, "minute"),)),
    Endpoint("rate-limits-grants", ("POST",), "/rate-limits/grants", "rate-limiting",
             "Grant extra stories for today to a family or an account", (ADMIN,), ((30, "minute"),)),
    Endpoint("rate-limits-blocks", ("GET",), "/rate-limits/blocks", "rate-limiting",
             "Abuse blocks in force", (ADMIN,), ((60, "minute"),)),
    Endpoint("rate-limits-unblock", ("DELETE",), f"/rate-limits/blocks/(?<block_id>{BLOCK_ID})", "rate-limiting",
             "Lift an abuse block", (ADMIN,), ((30, "minute"),)),
    Endpoint("rate-limits-occasions", ("GET",), "/rate-limits/occasions", "rate-limiting",
             "Special occasions that add stories", (ADMIN,), ((60, "minute"),)),
    Endpoint("rate-limits-occasion", ("PUT", "DELETE"), f"/rate-limits/occasions/(?<date>{OCCASION})",
             "rate-limiting", "Set or remove a special occasion", (ADMIN,), ((30, "minute"),)),
    Endpoint("rate-limits-plans", ("GET",), "/rate-limits/plans", "rate-limiting",
             "The plans the gateway enforces", (ADMIN,), ((60, "minute"),)),
)  # fmt: skip

# -- issue 20 (families, round two): connected apps and the parent pages (auth service: oauth/connected.py, pages/) --
# The connected-apps API: JSON, parents only (a co-parent's or another family's app is the service's 404). The parent
# pages: server-rendered HTML forms, no JavaScript, unversioned under /parent/ (DEVICE_VERIFICATION_URI names
# /parent/device). Public for sv-jwt like the OAuth consent page (the pages sign the parent in themselves: a
# page-session cookie, a CSRF token on every form), limited per IP; their HTML answers, errors included, pass through
# as the service wrote them (pass_upstream_errors); the gateway's own errors stay problem documents.
PAGE_LIMITS = ((60, "minute"), (600, "hour"))
FAMILY_PAGES: tuple[Endpoint, ...] = (
    Endpoint("auth-connected-apps", ("GET",), "/auth/connected-apps", "auth",
             "The third-party apps the parent has connected", (PARENT,), ((60, "minute"),)),
    Endpoint("auth-connected-app-revoke", ("DELETE",), f"/auth/connected-apps/(?<app_id>{UUID})", "auth",
             "Disconnect an app: its refresh and access tokens stop working", (PARENT,), ((30, "minute"),)),
    Endpoint("parent-sign-in", ("GET", "POST"), "/parent/sign-in", "auth",
             "Parent pages: sign in (password, and the authenticator code when set up)",
             limits=((20, "minute"), (200, "hour")), versioned=False, protocol_errors=True),
    Endpoint("parent-sign-out", ("POST",), "/parent/sign-out", "auth", "Parent pages: sign out",
             limits=PAGE_LIMITS, versioned=False, protocol_errors=True),
    Endpoint("parent-device", ("GET", "POST"), "/parent/device", "auth",
             "Parent pages: enter a device's code and approve or deny it (RFC 8628)",
             limits=PAGE_LIMITS, versioned=False, protocol_errors=True),
    Endpoint("parent-family", ("GET",), "/parent/family", "auth",
             "Parent pages: the family (children, controls, devices, connected apps)",
             limits=PAGE_LIMITS, versioned=False, protocol_errors=True),
    Endpoint("parent-session-revoke", ("POST",), "/parent/family/sessions/revoke", "auth",
             "Parent pages: sign a child out of one device", limits=PAGE_LIMITS, versioned=False,
             protocol_errors=True),
    Endpoint("parent-app-revoke", ("POST",), "/parent/family/apps/revoke", "auth",
             "Parent pages: disconnect an app", limits=PAGE_LIMITS, versioned=False, protocol_errors=True),
)  # fmt: skip

ENDPOINTS: tuple[Endpoint, ...] = SEED + AUTH_SERVICE + OAUTH + DOCS + RATE_LIMITING + FAMILY_PAGES

# proxy-cache (Kong's bundled plugin, memory strategy; the emulator runs it natively) on the `cache=True` routes.
# Kong keys entries by route, method, path and query, plus the Kong consumer. Our callers are not Kong consumers
# (sv-jwt hands identity on in headers), so the key also varies on the gateway-set X-User-Id (a client's copy is
# stripped by sv-jwt first): one caller never gets another caller's answer, whatever the service puts in it. Only
# 200s with a JSON body are kept, for 30 s; sv-jwt, sv-rbac and sv-quota still run before every hit (priority).
CACHE: dict[str, Any] = {
    "strategy": "memory",
    "cache_ttl": 30,
    "response_code": [200],
    "request_method": ["GET"],
    "content_type": ["application/json", "application/json; charset=utf-8"],
    "vary_headers": ["X-User-Id"],
    "cache_control": False,
}

# CORS preflight: one OPTIONS-only route over every browser-facing path; Kong's `cors` plugin answers it.
PREFLIGHT_LIMIT = (300, "minute")

ABUSE_THRESHOLD = 20  # sv-quota's default strikes per window; scaled only when limit_scale != 1

SERVICE_TIMEOUTS_MS = {  # (connect, read/write): generation waits for a model, everything else answers fast
    "auth": (2000, 10000),
    "stories": (2000, 15000),
    "characters": (2000, 15000),
    "universes": (2000, 15000),
    "generation": (2000, 120000),
    "rate-limiting": (2000, 10000),
}
