"""The routing matrix: every endpoint × method (canonical and alias) reaches the intended service and route with the
intended plugins; every other method or path gets no route (Kong's 404). In-process: the emulator's Router and
plugins_iterator over the loaded kong.yml, no processes.

The expectations are written out here, independently of the route table (storyverse_gateway_config.routes), so a
change to the table that changes the public API fails until this list (the contract) is changed too.
"""

from __future__ import annotations

import pytest
from kong_emulator.router.traditional import Router
from kong_emulator.runloop.plugins_iterator import plugins_for
from kong_yml_support import KONG_YML, load, plugin_infos
from storyverse_contracts.identity import IDENTITY_HEADER_PREFIX, IDENTITY_HEADERS

UID = "0b6f3c1e-6a4e-4f6b-9d7a-2f1e5c3b9a10"
P, C, A = "parent", "child", "admin"
GENERATION_KINDS = ("text", "image", "audio")
ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")

# (route name without version, methods, example path after /api/v1, service, roles (None = public), daily quota)
SEED = [
    ("auth-register", {"POST"}, "/auth/register", "auth", None, False),
    ("auth-login", {"POST"}, "/auth/login", "auth", None, False),
    ("auth-refresh", {"POST"}, "/auth/refresh", "auth", None, False),
    ("auth-logout", {"POST"}, "/auth/logout", "auth", {P, C, A}, False),
    ("stories-list", {"GET"}, "/stories", "stories", {P, C}, False),
    ("stories-create", {"POST"}, "/stories", "stories", {P, C}, True),
    ("stories-get", {"GET"}, "/stories/42", "stories", {P, C}, False),
    ("stories-update", {"PUT", "PATCH"}, "/stories/42", "stories", {P}, False),
    ("stories-delete", {"DELETE"}, "/stories/42", "stories", {P}, False),
    ("characters-list", {"GET"}, "/characters", "characters", {P, C}, False),
    ("characters-get", {"GET"}, "/characters/7", "characters", {P, C}, False),
    ("universes-list", {"GET"}, "/universes", "universes", {P, C}, False),
    ("universes-get", {"GET"}, "/universes/3", "universes", {P, C}, False),
    ("generate", {"POST"}, "/generate/text", "generation", {P, C}, True),
]
# The seed's table has sixteen (method, path) rows: one route per row, except generation (one route for
# /generate/text, /image and /audio) and update (PUT, plus PATCH). Creating characters and universes is ours.
SEED_ROWS = 16
BACKENDS = [
    ("characters-create", {"POST"}, "/characters", "characters", {P}, False),
    ("universes-create", {"POST"}, "/universes", "universes", {P}, False),
]
AUTH = [
    ("auth-me", {"GET"}, "/auth/me", "auth", {P, C, A}, False),
    ("auth-sessions-list", {"GET"}, "/auth/sessions", "auth", {P, C, A}, False),
    ("auth-sessions-revoke", {"DELETE"}, f"/auth/sessions/{UID}", "auth", {P, A}, False),
    ("auth-password-forgot", {"POST"}, "/auth/password/forgot", "auth", None, False),
    ("auth-password-reset", {"POST"}, "/auth/password/reset", "auth", None, False),
    ("auth-password-change", {"POST"}, "/auth/password/change", "auth", {P, A}, False),
    ("auth-family-get", {"GET"}, "/auth/family", "auth", {P}, False),
    ("auth-usage", {"GET"}, "/auth/usage", "rate-limiting", {P}, False),  # the rate limiting service serves it
    ("auth-family-invite", {"POST"}, "/auth/family/invitations", "auth", {P}, False),
    ("auth-family-join", {"POST"}, "/auth/family/join", "auth", None, False),
    ("auth-children-list", {"GET"}, "/auth/children", "auth", {P}, False),
    ("auth-children-create", {"POST"}, "/auth/children", "auth", {P}, False),
    ("auth-child-get", {"GET"}, f"/auth/children/{UID}", "auth", {P}, False),
    ("auth-child-update", {"PATCH"}, f"/auth/children/{UID}", "auth", {P}, False),
    ("auth-child-delete", {"DELETE"}, f"/auth/children/{UID}", "auth", {P}, False),
    ("auth-child-pin", {"PUT"}, f"/auth/children/{UID}/pin", "auth", {P}, False),
    ("auth-child-consent", {"POST"}, f"/auth/children/{UID}/consent", "auth", {P}, False),
    ("auth-child-sessions", {"GET", "DELETE"}, f"/auth/children/{UID}/sessions", "auth", {P}, False),
    ("auth-child-login", {"POST"}, "/auth/child/login", "auth", None, False),
    ("auth-device-code", {"POST"}, "/auth/device/code", "auth", None, False),
    ("auth-device-token", {"POST"}, "/auth/device/token", "auth", None, False),
    ("auth-device-approve", {"POST"}, "/auth/device/approve", "auth", {P}, False),
    ("auth-device-deny", {"POST"}, "/auth/device/deny", "auth", {P}, False),
    ("auth-family-plan", {"GET", "POST"}, "/auth/family/plan", "auth", {P}, False),
    ("auth-billing-webhook", {"POST"}, "/auth/billing/webhook", "auth", None, False),
    ("auth-email-verify", {"POST"}, "/auth/email/verify", "auth", None, False),
    ("auth-email-resend", {"POST"}, "/auth/email/verification", "auth", {P, A}, False),
    ("auth-consent-withdraw", {"DELETE"}, f"/auth/children/{UID}/consent", "auth", {P}, False),
    ("auth-account-export", {"GET"}, "/auth/account/export", "auth", {P}, False),
    ("auth-account-deletion", {"POST", "DELETE"}, "/auth/account/deletion", "auth", {P}, False),
    ("auth-mfa-status", {"GET"}, "/auth/mfa", "auth", {P}, False),
    ("auth-mfa-totp", {"POST", "DELETE"}, "/auth/mfa/totp", "auth", {P}, False),
    ("auth-mfa-totp-confirm", {"POST"}, "/auth/mfa/totp/confirm", "auth", {P}, False),
    ("auth-mfa-verify", {"POST"}, "/auth/mfa/verify", "auth", {P}, False),
    ("auth-mfa-recovery-codes", {"POST"}, "/auth/mfa/recovery-codes", "auth", {P}, False),
    ("auth-api-keys", {"GET", "POST"}, "/auth/api-keys", "auth", {P, A}, False),
    ("auth-api-key-revoke", {"DELETE"}, f"/auth/api-keys/{UID}", "auth", {P, A}, False),
    ("auth-api-key-token", {"POST"}, "/auth/api-keys/token", "auth", None, False),
    ("auth-admin-api-key-plan", {"PUT"}, f"/auth/admin/api-keys/{UID}/plan", "auth", {A}, False),
    # issue 20: connected apps (parents only)
    ("auth-connected-apps", {"GET"}, "/auth/connected-apps", "auth", {P}, False),
    ("auth-connected-app-revoke", {"DELETE"}, f"/auth/connected-apps/{UID}", "auth", {P}, False),
]
# answered by the gateway itself (sv-edge serves a file of the image), never proxied; routed via the auth service
DOCS = [
    ("openapi", {"GET"}, "/openapi.json", "auth", None, False),
    ("api-docs", {"GET"}, "/docs", "auth", None, False),
]
UNVERSIONED = [  # (route name, methods, absolute path, service) — all public
    ("discovery", {"GET"}, "/.well-known/openid-configuration", "auth"),
    ("jwks", {"GET"}, "/.well-known/jwks.json", "auth"),
    ("oauth-authorize", {"GET", "POST"}, "/oauth/authorize", "auth"),
    ("oauth-token", {"POST"}, "/oauth/token", "auth"),
    ("oauth-revoke", {"POST"}, "/oauth/revoke", "auth"),
    ("oauth-introspect", {"POST"}, "/oauth/introspect", "auth"),
    ("oauth-userinfo", {"GET", "POST"}, "/oauth/userinfo", "auth"),
    # issue 20: the parent pages (they sign the parent in themselves)
    ("parent-sign-in", {"GET", "POST"}, "/parent/sign-in", "auth"),
    ("parent-sign-out", {"POST"}, "/parent/sign-out", "auth"),
    ("parent-device", {"GET", "POST"}, "/parent/device", "auth"),
    ("parent-family", {"GET"}, "/parent/family", "auth"),
    ("parent-session-revoke", {"POST"}, "/parent/family/sessions/revoke", "auth"),
    ("parent-app-revoke", {"POST"}, "/parent/family/apps/revoke", "auth"),
]
BLOCK = "c3Y6cXVvdGE6djE6e2lwOjEwLjAuMC4xfTphYg"  # base64url of sv:quota:v1:{ip:10.0.0.1}:ab
RATE_LIMITING = [  # the rate limiting service's admin API
    ("rate-limits-usage", {"GET"}, "/rate-limits/usage", "rate-limiting", {A}, False),
    ("rate-limits-grants", {"POST"}, "/rate-limits/grants", "rate-limiting", {A}, False),
    ("rate-limits-blocks", {"GET"}, "/rate-limits/blocks", "rate-limiting", {A}, False),
    ("rate-limits-unblock", {"DELETE"}, f"/rate-limits/blocks/{BLOCK}", "rate-limiting", {A}, False),
    ("rate-limits-occasions", {"GET"}, "/rate-limits/occasions", "rate-limiting", {A}, False),
    ("rate-limits-occasion", {"PUT", "DELETE"}, "/rate-limits/occasions/12-24", "rate-limiting", {A}, False),
    ("rate-limits-plans", {"GET"}, "/rate-limits/plans", "rate-limiting", {A}, False),
]
VERSIONED = SEED + BACKENDS + AUTH + DOCS + RATE_LIMITING
# proxy-cache: the non-personal catalogue reads only
CACHED = {"v1-characters-list", "v1-characters-get", "v1-universes-list", "v1-universes-get"}
UNLISTED = [
    "/", "/api", "/api/v1", "/api/v1/", "/api/v2/stories", "/api/V1/stories", "/API/v1/stories", "/api/v1/v1/stories",
    "/api/v1/stories/", "/api/v1/storiesx", "/api/v1/stories/abc", "/api/v1/stories/-1", "/api/v1/stories/42/x",
    "/api/v1/stories/42/characters", "/api/v1/generate", "/api/v1/generate/video", "/api/v1/generate/text/x",
    "/api/v1/auth", "/api/v1/auth/children/not-a-uuid", f"/api/v1/auth/children/{UID}/controls",
    f"/api/v1/auth/children/{UID}x", "/api/v1/auth/sessions/42", "/api/v1/users", "/api/v1/usage",
    "/healthz", "/readyz", "/metrics", "/__echo", "/__status/500", "/.well-known/jwks.jsonx", "/docs/oauth2-redirect",
    "/openapi.json", "/docs", "/api/v1/docs/", "/api/v2/docs", "/v1/stories", "/stories", "/auth/login", "/api/auth",
    "/api/stories/42/x", "/oauth", "/oauth/", "/oauth/tokenx", "/oauth/token/x", "/api/v1/oauth/token",
    "/api/oauth/token", "/api/v1/auth/oauth/clients", "/api/auth/oauth/clients", "/api/v1/auth/api-keys/x",
    "/api/v1/auth/admin/usage", "/api/v1/auth/usage/x", "/api/v1/rate-limits", "/api/v1/rate-limits/blocks/a{b}",
    "/api/v1/rate-limits/blocks/short", "/api/v1/rate-limits/occasions/12-24-1", "/api/v1/rate-limits/occasions/xmas",
]  # fmt: skip


@pytest.fixture(scope="module")
def config():
    return load(KONG_YML)


@pytest.fixture(scope="module")
def router(config):
    return Router(config.routes, config.services)


def cases():
    for name, methods, path, service, roles, quota in VERSIONED:
        for prefix in ("/api/v1", "/api"):
            yield pytest.param(f"v1-{name}", methods, prefix + path, service, roles, quota, id=f"{prefix}{path}")
    for name, methods, path, service in UNVERSIONED:
        yield pytest.param(name, methods, path, service, None, False, id=path)


def access_plugins(config, match):
    return {p.name: p for p in plugins_for(config, match.route, match.service, None, "access", plugin_infos())}


@pytest.mark.parametrize(("route", "methods", "path", "service", "roles", "quota"), list(cases()))
def test_endpoint_routes_to_its_service_with_its_plugins(config, router, route, methods, path, service, roles, quota):
    for method in methods:
        match = router.match(method, "api.storyverse.test", path, {})
        assert match is not None, f"{method} {path}: no route"
        assert (match.route.name, match.service.name) == (route, service), f"{method} {path}"
    match = router.match(sorted(methods)[0], "api.storyverse.test", path + "?expand=characters&x=1", {})
    assert match is not None and match.route.name == route  # a query string changes nothing
    assert_plugins(access_plugins(config, match), match.route, roles, quota)


def listed_methods() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for _, methods, path, *_ in cases_values():
        out.setdefault(path, set()).update(methods)
    return out


def cases_values():
    return [c.values for c in cases()]


@pytest.mark.parametrize("path", sorted(listed_methods()))
def test_other_methods_on_a_listed_path_get_no_route(router, path):
    allowed = listed_methods()[path]
    for method in ALL_METHODS:
        match = router.match(method, "api.storyverse.test", path, {})
        if method == "OPTIONS":
            assert match is not None and match.route.name == "cors-preflight", f"OPTIONS {path}"
        elif method not in allowed:
            assert match is None, f"{method} {path} routed to {match.route.name}"


LOGIN = {"v1-auth-login", "v1-auth-child-login"}
PROTECTED = ["sv-jwt", "sv-rbac", "sv-quota"]


def assert_plugins(plugins, route, roles, quota):
    settles = quota or route.name in LOGIN  # sv-quota-log's access phase leaves the mark that it is up to settle
    expected = ["sv-request-id", "cors", "sv-jwt", "sv-rbac", "sv-quota", "sv-edge"]
    if settles:
        expected.insert(5, "sv-quota-log")
    if route.name.endswith("stories-get"):  # the story item is also composed with its characters and universe
        expected.insert(5, "sv-expand")
    if route.name in CACHED:  # after every check and the guard (priority 100 < sv-edge's 800)
        expected.append("proxy-cache")
    assert list(plugins) == expected
    if route.name in CACHED:
        cache = plugins["proxy-cache"]
        assert cache.route_id == route.id and cache.config["strategy"] == "memory"
        assert cache.config["cache_ttl"] == 30 and cache.config["response_code"] == [200]
        assert cache.config["request_method"] == ["GET"]
        assert set(cache.config["content_type"]) == {"application/json", "application/json; charset=utf-8"}
        assert cache.config["vary_headers"] == ["X-User-Id"]  # never one caller's answer to another
    jwt, rbac, limits, edge = (plugins[n] for n in ("sv-jwt", "sv-rbac", "sv-quota", "sv-edge"))
    assert rbac.route_id == limits.route_id == route.id  # this endpoint's own policy, never the global fallback
    assert plugins["sv-request-id"].route_id is None
    assert jwt.config["headers_in_guard"] is True  # sv-edge sets the identity headers, before proxy-cache keys
    if roles is None:  # public: anonymous sv-jwt, public sv-rbac, IP limits, only sv-quota('s mark) required
        assert jwt.route_id == route.id and jwt.config["anonymous"] is True
        assert rbac.config["public"] is True
        assert {p["by"] for p in limits.config["policies"]} == {"ip"}
        assert edge.route_id == route.id
        assert edge.config["require"] == ["sv-quota"] + (["sv-quota-log"] if settles else [])
        served = {"v1-openapi": "storyverse.json", "v1-api-docs": "index.html"}.get(route.name)
        assert (edge.config["serve"] or {}).get("file") == served  # the gateway answers from a file of the image
        # the provider's OAuth errors and the parent pages' HTML error pages pass through unformatted
        assert edge.config["pass_upstream_errors"] is route.name.startswith(("oauth-", "parent-"))
    else:  # authenticated: the global strict sv-jwt; every protected mark required
        assert jwt.route_id is None and jwt.config["anonymous"] is False
        assert edge.config["require"] == PROTECTED + (["sv-quota-log"] if settles else [])
        assert (edge.route_id == route.id) is settles  # the global sv-edge unless the route needs more
        assert rbac.config["public"] is False
        assert {r for rule in rbac.config["rules"] for r in rule["roles"]} == roles
        assert {m for rule in rbac.config["rules"] for m in rule["methods"]} == set(route.methods)
        assert {p["by"] for p in limits.config["policies"]} == {"user"}
    assert (limits.config["quota"] or {}).get("enabled", False) is quota


def test_every_route_requires_the_mark_of_every_security_plugin_it_runs(config):
    """The guard's contract: a plugin configured on a route that leaves no mark is a plugin that can fail open."""
    marked = {"sv-jwt", "sv-rbac", "sv-quota", "sv-quota-log"}
    for route in config.routes:
        access = plugins_for(config, route, None, None, "access", plugin_infos())
        log = plugins_for(config, route, None, None, "log", plugin_infos())
        running = {p.name for p in access + log} & marked
        edge = next(p for p in access if p.name == "sv-edge")
        public = next(p for p in access if p.name == "sv-rbac").config["public"]
        required = set(edge.config["require"])
        if public:  # no identity needed: sv-jwt (anonymous) and sv-rbac (public) decide nothing
            running -= {"sv-jwt", "sv-rbac"}
        assert running <= required, f"{route.name}: {sorted(running - required)} can fail open"


def test_sv_quota_log_only_where_the_log_phase_is_needed(config):
    """Daily-quota routes (reservation settle) and login routes (failed logins), with their sv-quota's config."""
    by_route = {(p.route_id, p.name): p for p in config.plugins if p.route_id}
    names = {r.id: r.name for r in config.routes}
    logged = sorted(names[rid] for rid, name in by_route if name == "sv-quota-log")
    assert logged == ["v1-auth-child-login", "v1-auth-login", "v1-generate", "v1-stories-create"]
    for rid, name in list(by_route):
        if name == "sv-quota-log":
            assert by_route[(rid, name)].config == by_route[(rid, "sv-quota")].config
    assert not [p for p in config.plugins if p.name == "sv-quota-log" and not p.route_id]


@pytest.mark.parametrize("path", UNLISTED)
def test_unlisted_paths_get_no_route(router, path):
    for method in ALL_METHODS:
        assert router.match(method, "api.storyverse.test", path, {}) is None, f"{method} {path}"


def test_the_matrix_covers_every_route(config):
    listed = {f"v1-{name}" for name, *_ in VERSIONED} | {name for name, *_ in UNVERSIONED} | {"cors-preflight"}
    assert {r.name for r in config.routes} == listed


def test_seed_endpoints_are_the_sixteen(config):
    seed = [r for r in config.routes if "seed" in (r.tags or [])]
    assert sorted(r.name for r in seed) == sorted(f"v1-{name}" for name, *_ in SEED)
    rows = sum(len(GENERATION_KINDS) if name == "generate" else 1 for name, *_ in SEED)
    assert rows == SEED_ROWS


def test_generation_kind_and_child_ownership_reach_sv_rbac(config, router):
    gen = router.match("POST", "h", "/api/v1/generate/audio", {})
    assert gen.captures["named"] == {"kind": "audio"}
    assert access_plugins(config, gen)["sv-rbac"].config["kind_capture"] == "kind"
    child = router.match("PUT", "h", f"/api/auth/children/{UID}/pin", {})
    assert child.captures["named"] == {"child_id": UID}
    owned = access_plugins(config, child)["sv-rbac"].config["owned_captures"]
    assert [(o["name"], o["kind"]) for o in owned] == [("child_id", "child")]


def test_only_story_creation_and_generation_charge_the_daily_quota(config):
    charged = sorted(
        p.route_id and next(r.name for r in config.routes if r.id == p.route_id)
        for p in config.plugins
        if p.name == "sv-quota" and (p.config["quota"] or {}).get("enabled")
    )
    assert charged == ["v1-generate", "v1-stories-create"]


def test_rate_limit_policy_names_are_unique_per_endpoint(config):
    names = [pol["name"] for p in config.plugins if p.name == "sv-quota" for pol in p.config["policies"]]
    assert len(names) == len(set(names))


def test_upstreams_and_timeouts(config):
    services = {s.name: s for s in config.services.values()}
    ports = {"auth": 9000, "stories": 9101, "characters": 9102, "universes": 9103, "generation": 9104}
    ports["rate-limiting"] = 9200  # the rate limiting service (scripts/run_stack.py)
    assert {n: (s.host, s.port) for n, s in services.items()} == {n: ("127.0.0.1", p) for n, p in ports.items()}
    assert all(s.retries == 0 for s in services.values())  # a replayed POST would create or charge twice
    assert services["generation"].read_timeout >= 60000


def test_global_plugins(config):
    globals_ = {p.name: p for p in config.plugins if not (p.route_id or p.service_id or p.consumer_id)}
    assert set(globals_) == {
        *("sv-request-id", "cors", "prometheus", "file-log"),
        *("sv-jwt", "sv-rbac", "sv-quota", "sv-edge"),
    }
    log = globals_["file-log"].config
    assert log["path"] == "/dev/stdout"  # the container's log stream (settings `access_log`)
    assert log["custom_fields_by_lua"] is None  # sv-edge's log phase edits the record: no Lua in kong.yml
    assert globals_["sv-request-id"].config["header_name"] == "X-Request-Id"
    assert globals_["sv-jwt"].config["anonymous"] is False
    # the default-deny for a route that forgot its own sv-rbac: admins only
    assert [rule["roles"] for rule in globals_["sv-rbac"].config["rules"]] == [["admin"]]
    edge = globals_["sv-edge"].config
    assert edge["require"] == PROTECTED  # every route is guarded unless it says otherwise
    # the identity header names come from their one definition (storyverse_contracts.identity)
    assert edge["strip_headers"] == list(IDENTITY_HEADERS.values())
    assert edge["strip_header_prefixes"] == [IDENTITY_HEADER_PREFIX]
    assert "access_token" in edge["redact_query_args"] and edge["strip_version"] is True
