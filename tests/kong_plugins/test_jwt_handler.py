"""sv-jwt handler with FakeKong: PDK round trips, spoofed headers, public routes, fail-closed paths.

Real pieces underneath: a local JWKS server, Redis db 12 for the denylist, tokens signed by keys generated here.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from storyverse_contracts.keys import revoked_jti_key, revoked_sid_key
from storyverse_plugins import PRIORITIES
from storyverse_plugins.common.identity import SHARED_IDENTITY
from storyverse_plugins.common.problem import PROBLEM_JSON
from storyverse_plugins.jwt_auth import gate as gate_module
from storyverse_plugins.jwt_auth.handler import Plugin, priority
from test_jwt_kit import JwksServer, dead_url, jwk_of, mint, plugin_config, redis_db12, serving


@pytest.fixture
def jwks_server():
    yield from serving()


@pytest.fixture
def redis12():
    yield from redis_db12()


def now_token(kind: str = "rsa", **overrides) -> str:
    return mint(kind, now=time.time(), **overrides)


def run(plugin: Plugin, fake_kong, headers: dict):
    fk = fake_kong({"kong.request.get_headers": headers})
    plugin.access(fk.kong)
    return fk


def methods(fk) -> list[str]:
    return [name for name, _ in fk.calls]


def problem(fk) -> tuple[int, dict, dict]:
    status, body, headers = fk.exited
    return status, json.loads(body), headers


@pytest.fixture
def plugin(jwks_server, redis12):
    return Plugin(plugin_config(jwks_server.url))


@pytest.fixture
def public_plugin(jwks_server, redis12):
    return Plugin(plugin_config(jwks_server.url, anonymous=True))


def test_priority_is_the_band_of_kongs_jwt():
    assert priority == PRIORITIES["sv-jwt"] == 1450


# --- happy path ---------------------------------------------------------------------------------------------------


def test_happy_path_is_three_round_trips_and_hands_identity_on(plugin, fake_kong):
    token = now_token(sub="parent-7", family_id="fam-7", tier="basic")
    fk = run(plugin, fake_kong, {"authorization": [f"Bearer {token}"], "x-request-id": ["req-12345678"]})
    assert methods(fk) == ["kong.request.get_headers", "kong.service.request.set_headers", "kong.ctx.shared.set"]
    assert fk.called("kong.request.get_headers") == [(100,)]
    ((upstream,),) = fk.called("kong.service.request.set_headers")
    assert upstream == {
        "X-User-Id": "parent-7",
        "X-User-Role": "parent",
        "X-Family-Id": "fam-7",
        "X-Account-Tier": "basic",
    }
    identity = fk.shared[SHARED_IDENTITY]
    assert identity["authenticated"] is True and identity["sub"] == "parent-7" and identity["tz"] == "Europe/Paris"
    assert isinstance(identity["exp"], int) and "jti" in identity and fk.exited is None


def test_child_identity_carries_the_content_rating(plugin, fake_kong):
    token = now_token(role="child", age_band="6-8", content_rating="G")
    fk = run(plugin, fake_kong, {"authorization": [f"Bearer {token}"]})
    ((upstream,),) = fk.called("kong.service.request.set_headers")
    assert upstream["X-Content-Rating"] == "G" and upstream["X-User-Role"] == "child"
    assert fk.shared[SHARED_IDENTITY]["age_band"] == "6-8"


def test_a_repeat_request_skips_the_signature_check(plugin, fake_kong, monkeypatch):
    headers = {"authorization": [f"Bearer {now_token()}"]}
    run(plugin, fake_kong, headers)
    monkeypatch.setattr(gate_module, "verify", lambda *a: pytest.fail("verified again"))
    fk = run(plugin, fake_kong, headers)
    assert len(fk.calls) == 3 and fk.exited is None
    assert plugin.gate.cache.hits == 1


def test_bearer_scheme_is_case_insensitive(plugin, fake_kong):
    fk = run(plugin, fake_kong, {"authorization": [f"bearer {now_token()}"]})
    assert fk.exited is None


# --- spoofed identity headers ------------------------------------------------------------------------------------


SPOOFS = {
    "x-user-id": ["admin-1"],
    "x-user-role": ["admin", "admin"],
    "x-family-id": ["other-family"],
    "x-account-tier": ["premium"],
    "x-content-rating": ["R"],
    "x-sv-debug": ["1"],
    "x_user_role": ["admin"],
    "x-sv-anything-else": ["x"],
}


def test_spoofed_headers_are_cleared_or_overwritten_on_protected_routes(plugin, fake_kong):
    fk = run(plugin, fake_kong, {"authorization": [f"Bearer {now_token()}"], **SPOOFS})
    ((upstream,),) = fk.called("kong.service.request.set_headers")
    cleared = {name for name, value in upstream.items() if value == []}
    assert fk.called("kong.service.request.clear_header") == [] and len(fk.calls) == 3
    assert cleared == {"x-content-rating", "x-sv-debug", "x_user_role", "x-sv-anything-else"}  # parent: no rating
    assert upstream["X-User-Id"] == "user-1" and upstream["X-User-Role"] == "parent"
    assert upstream["X-Family-Id"] == "fam-1" and upstream["X-Account-Tier"] == "premium"
    assert {name.lower() for name in upstream} | cleared >= set(SPOOFS)
    assert methods(fk)[-1] == "kong.ctx.shared.set" and fk.exited is None


def test_spoofed_headers_are_cleared_on_public_routes_without_a_token(public_plugin, fake_kong):
    fk = run(public_plugin, fake_kong, SPOOFS)
    ((upstream,),) = fk.called("kong.service.request.set_headers")
    assert upstream == {name: [] for name in SPOOFS}
    assert fk.called("kong.ctx.shared.set") == [] and fk.exited is None


def test_a_flood_of_spoofed_headers_is_refused_not_paid_for(public_plugin, fake_kong):
    fk = run(public_plugin, fake_kong, {f"x-sv-h{i}": ["1"] for i in range(40)})
    assert methods(fk) == ["kong.request.get_headers", "kong.response.exit"]
    assert problem(fk)[0] == 400


def test_a_request_that_may_have_been_truncated_is_refused(plugin, fake_kong):
    headers = {f"x-filler-{i}": ["1"] for i in range(99)} | {"x-user-id": ["admin"]}
    fk = run(plugin, fake_kong, headers)
    assert problem(fk)[0] == 400


# --- public routes --------------------------------------------------------------------------------------------------


def test_public_route_without_token_is_one_round_trip(public_plugin, fake_kong):
    fk = run(public_plugin, fake_kong, {"host": ["api.storyverse.test"]})
    assert methods(fk) == ["kong.request.get_headers"] and fk.exited is None


def test_public_route_with_an_invalid_token_is_still_401(public_plugin, fake_kong):
    fk = run(public_plugin, fake_kong, {"authorization": [f"Bearer {now_token(aud='other')}"]})
    status, _, headers = problem(fk)
    assert status == 401 and headers["WWW-Authenticate"] == 'Bearer realm="storyverse", error="invalid_token"'


def test_public_route_with_a_valid_token_sets_identity(public_plugin, fake_kong):
    fk = run(public_plugin, fake_kong, {"authorization": [f"Bearer {now_token()}"]})
    assert fk.shared[SHARED_IDENTITY]["sub"] == "user-1"


def test_public_route_does_not_need_the_jwks(fake_kong, redis12):
    fk = run(Plugin(plugin_config(dead_url(), anonymous=True)), fake_kong, {})
    assert fk.exited is None


# --- 401 -----------------------------------------------------------------------------------------------------------


def test_missing_token_is_401_without_error_code_in_the_challenge(plugin, fake_kong):
    fk = run(plugin, fake_kong, {"x-request-id": ["req-12345678"]})
    status, body, headers = problem(fk)
    assert methods(fk) == ["kong.request.get_headers", "kong.response.exit"]
    assert status == 401 and headers["WWW-Authenticate"] == 'Bearer realm="storyverse"'
    assert headers["Content-Type"] == PROBLEM_JSON
    assert body["status"] == 401 and body["code"] == "invalid_token" and body["request_id"] == "req-12345678"


def test_another_scheme_counts_as_no_token(plugin, fake_kong):
    fk = run(plugin, fake_kong, {"authorization": ["Basic dXNlcjpwYXNz"]})
    assert problem(fk)[2]["WWW-Authenticate"] == 'Bearer realm="storyverse"'


@pytest.mark.parametrize(
    "authorization",
    [
        ["Bearer "],
        ["Bearer a.b.c"],
        ["Bearer x y"],
        ["Bearer " + "a" * 9000],
        [f"Bearer {now_token()}", f"Bearer {now_token()}"],
    ],
)
def test_invalid_tokens_are_401_with_invalid_token_and_no_detail(plugin, fake_kong, authorization):
    fk = run(plugin, fake_kong, {"authorization": authorization})
    status, body, headers = problem(fk)
    assert methods(fk) == ["kong.request.get_headers", "kong.response.exit"]
    assert status == 401 and headers["WWW-Authenticate"] == 'Bearer realm="storyverse", error="invalid_token"'
    assert body["detail"] == "The access token is invalid."


def test_expired_token_says_so(plugin, fake_kong):
    fk = run(plugin, fake_kong, {"authorization": [f"Bearer {mint(now=time.time() - 3600)}"]})
    status, body, headers = problem(fk)
    assert status == 401 and body["code"] == "token_expired"
    assert 'error="invalid_token"' in headers["WWW-Authenticate"]


def test_malformed_kid_does_not_trigger_a_jwks_fetch(plugin, fake_kong, jwks_server):
    run(plugin, fake_kong, {"authorization": [f"Bearer {now_token()}"]})
    before = jwks_server.fetches
    for kid in ("../../dev/null", "x' UNION SELECT '1';--", "|sleep 10"):
        fk = run(plugin, fake_kong, {"authorization": [f"Bearer {now_token(headers={'kid': kid})}"]})
        assert problem(fk)[0] == 401
    assert jwks_server.fetches == before


def test_unknown_kid_flood_is_held_to_the_refetch_rate(plugin, fake_kong, jwks_server):
    for i in range(50):
        fk = run(plugin, fake_kong, {"authorization": [f"Bearer {now_token(headers={'kid': f'random-{i}'})}"]})
        assert problem(fk)[0] == 401
    assert jwks_server.fetches <= 2  # the first fetch, then at most one refetch per 30 s


def test_rotated_in_key_is_picked_up_on_first_sight(fake_kong, redis12):
    server = JwksServer()
    try:
        plugin = Plugin(plugin_config(server.url, jwks_refresh_min_interval=1))
        assert problem(run(plugin, fake_kong, {"authorization": [f"Bearer {now_token('rsa2')}"]}))[0] == 401
        server.doc = {"keys": [*server.doc["keys"], jwk_of("rsa2")]}
        time.sleep(1.05)
        fk = run(plugin, fake_kong, {"authorization": [f"Bearer {now_token('rsa2')}"]})
        assert fk.exited is None
    finally:
        server.close()


# --- denylist -------------------------------------------------------------------------------------------------------


@pytest.fixture
def uncached_plugin(jwks_server, redis12):
    """Asks Redis on every request (denylist_cache_ms 0), so a revocation shows on the very next request."""
    return Plugin(plugin_config(jwks_server.url, denylist_cache_ms=0))


def test_revoked_jti_is_401_also_after_a_cache_hit(uncached_plugin, fake_kong, redis12):
    plugin = uncached_plugin
    jti = str(uuid.uuid4())
    headers = {"authorization": [f"Bearer {now_token(jti=jti)}"]}
    assert run(plugin, fake_kong, headers).exited is None  # now cached
    redis12.set(revoked_jti_key(jti, "sess-1"), "1", ex=600)  # the kit's tokens carry sid "sess-1"
    fk = run(plugin, fake_kong, headers)
    status, body, _ = problem(fk)
    assert status == 401 and body["detail"] == "The access token is invalid."
    assert run(plugin, fake_kong, {"authorization": [f"Bearer {now_token()}"]}).exited is None


def test_revoked_session_is_401_also_after_a_cache_hit(uncached_plugin, fake_kong, redis12):
    sid = str(uuid.uuid4())
    headers = {"authorization": [f"Bearer {now_token(sid=sid)}"]}
    assert run(uncached_plugin, fake_kong, headers).exited is None
    redis12.set(revoked_sid_key(sid), "1", ex=600)
    status, _, headers_out = problem(run(uncached_plugin, fake_kong, headers))
    assert status == 401 and 'error="invalid_token"' in headers_out["WWW-Authenticate"]
    other = {"authorization": [f"Bearer {now_token(sid=str(uuid.uuid4()))}"]}
    assert run(uncached_plugin, fake_kong, other).exited is None


def test_revocation_takes_effect_within_the_denylist_cache_time(jwks_server, fake_kong, redis12):
    plugin = Plugin(plugin_config(jwks_server.url, denylist_cache_ms=200))
    jti = str(uuid.uuid4())
    headers = {"authorization": [f"Bearer {now_token(jti=jti)}"]}
    assert run(plugin, fake_kong, headers).exited is None
    redis12.set(revoked_jti_key(jti, "sess-1"), "1", ex=600)  # the kit's tokens carry sid "sess-1"
    time.sleep(0.25)
    assert problem(run(plugin, fake_kong, headers))[0] == 401


def test_redis_down_fails_closed_with_503(jwks_server, fake_kong):
    plugin = Plugin(plugin_config(jwks_server.url, redis_port=1))
    fk = run(plugin, fake_kong, {"authorization": [f"Bearer {now_token()}"]})
    status, body, headers = problem(fk)
    assert status == 503 and body["code"] == "auth_unavailable" and headers["Retry-After"] == "5"
    assert methods(fk) == ["kong.request.get_headers", "kong.log.err", "kong.response.exit"]


def test_redis_down_can_be_configured_fault_tolerant(jwks_server, fake_kong):
    plugin = Plugin(plugin_config(jwks_server.url, redis_port=2, denylist_fault_tolerant=True))
    assert run(plugin, fake_kong, {"authorization": [f"Bearer {now_token()}"]}).exited is None


# --- fail closed ----------------------------------------------------------------------------------------------------


def test_cold_start_with_the_jwks_unreachable_is_503(fake_kong, redis12):
    plugin = Plugin(plugin_config(dead_url()))
    fk = run(plugin, fake_kong, {"authorization": [f"Bearer {now_token()}"]})
    status, body, _ = problem(fk)
    assert status == 503 and body["code"] == "auth_unavailable"


@pytest.mark.parametrize("where", ["gate", "get_headers", "set_headers", "ctx"])
def test_a_forced_exception_anywhere_ends_in_500_not_a_pass_through(plugin, fake_kong, monkeypatch, where):
    def boom(*_args):
        raise RuntimeError("forced")

    returns = {"kong.request.get_headers": {"authorization": [f"Bearer {now_token()}"]}}
    if where == "gate":
        monkeypatch.setattr(plugin.gate, "decide", boom)
    else:
        returns[{"get_headers": "kong.request.get_headers", "set_headers": "kong.service.request.set_headers",
                 "ctx": "kong.ctx.shared.set"}[where]] = boom  # fmt: skip
    fk = fake_kong(returns)
    if where == "ctx":
        fk.shared = _Raising()
    plugin.access(fk.kong)  # must not raise
    status, body, headers = problem(fk)
    assert status == 500 and body["code"] == "internal_error" and headers["Content-Type"] == PROBLEM_JSON
    assert "forced" not in json.dumps(body)


class _Raising(dict):
    def __setitem__(self, key, value):
        raise RuntimeError("forced")


def test_a_bad_config_refuses_to_start():
    with pytest.raises(ValueError):
        Plugin(plugin_config("file:///etc/passwd"))


# --- headers_in_guard: the Kong-native post-function applies the identity headers (kong-plugins/guard) ---------------


@pytest.fixture
def guard_plugin(jwks_server, redis12):
    return Plugin({**plugin_config(jwks_server.url), "headers_in_guard": True})


def test_headers_in_guard_happy_path_is_two_round_trips(guard_plugin, fake_kong):
    token = now_token(sub="parent-7", family_id="fam-7", tier="basic")
    fk = run(guard_plugin, fake_kong, {"authorization": [f"Bearer {token}"]})
    assert methods(fk) == ["kong.request.get_headers", "kong.ctx.shared.set"] and fk.exited is None
    identity = fk.shared[SHARED_IDENTITY]
    assert identity["authenticated"] is True and identity["sub"] == "parent-7"
    assert identity["upstream"] == {
        "X-User-Id": "parent-7",
        "X-User-Role": "parent",
        "X-Family-Id": "fam-7",
        "X-Account-Tier": "basic",
    }
    assert "clear" not in identity  # nothing spoofed: nothing to clear
    fk = run(guard_plugin, fake_kong, {"authorization": [f"Bearer {token}"]})  # a cache hit: the same, and no leak
    assert methods(fk) == ["kong.request.get_headers", "kong.ctx.shared.set"]
    assert "clear" not in fk.shared[SHARED_IDENTITY]


def test_headers_in_guard_carries_the_spoofed_names_to_clear(guard_plugin, fake_kong):
    fk = run(guard_plugin, fake_kong, {"authorization": [f"Bearer {now_token()}"], **SPOOFS})
    assert methods(fk) == ["kong.request.get_headers", "kong.ctx.shared.set"]
    identity = fk.shared[SHARED_IDENTITY]
    assert set(identity["clear"]) == {"x-content-rating", "x-sv-debug", "x_user_role", "x-sv-anything-else"}
    assert identity["upstream"]["X-User-Id"] == "user-1" and identity["upstream"]["X-User-Role"] == "parent"
    assert {n.lower() for n in identity["upstream"]} | set(identity["clear"]) >= set(SPOOFS)


def test_headers_in_guard_public_route_without_token_is_one_round_trip(jwks_server, redis12, fake_kong):
    p = Plugin({**plugin_config(jwks_server.url, anonymous=True), "headers_in_guard": True})
    fk = run(p, fake_kong, SPOOFS)  # sv-edge strips them in rewrite, in Lua
    assert methods(fk) == ["kong.request.get_headers"] and fk.exited is None and fk.shared == {}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["Bearer abc.def.ghi"], "abc.def.ghi"),
        (["Bearer  abc"], "abc"),  # the general path strips, as before
        (["Bearer abc\t"], "abc"),
        (["\tBearer abc"], "abc"),
        (["BEARER abc"], "abc"),
        (["Basic abc"], None),
        (["Bearer a b"], "malformed"),
        (["Bearer "], "malformed"),
        (["Bearer caf\u00e9"], "malformed"),
        (["Bearer a", "Bearer b"], "malformed"),
    ],
)
def test_the_bearer_fast_path_keeps_every_rule(values, expected):
    from storyverse_plugins.jwt_auth.gate import bearer_token
    from storyverse_plugins.jwt_auth.tokens import Failure

    found = bearer_token(values)
    assert ("malformed" if isinstance(found, Failure) else found) == expected


def test_a_cached_decision_is_shared_but_spoofs_are_cleared_per_request(plugin, fake_kong):
    """The cache hit reuses the Allow built for the token; a request with client identity headers still gets its own
    clears, and the next clean request is not affected by them."""
    token = now_token()
    first = plugin.gate.decide({"authorization": [f"Bearer {token}"]}).decision
    spoofed = plugin.gate.decide({"authorization": [f"Bearer {token}"], "x-sv-debug": ["1"], "x-user-id": ["a"]})
    clean = plugin.gate.decide({"authorization": [f"Bearer {token}"]}).decision
    assert clean is first and "x-sv-debug" not in clean.upstream_headers
    upstream = spoofed.decision.upstream_headers
    assert upstream["x-sv-debug"] == [] and "x-user-id" not in upstream  # replaced by X-User-Id (set_headers)
    assert upstream["X-User-Id"] == "user-1"


def test_remembered_header_names_are_bounded(plugin):
    from storyverse_plugins.jwt_auth import gate as gate_module

    for n in range(gate_module.MAX_KNOWN_NAMES + 50):
        plugin.gate._scan({f"x-random-{n}": ["v"]})
    assert len(plugin.gate._known_names) == gate_module.MAX_KNOWN_NAMES
    assert plugin.gate._scan({"x-sv-unseen": ["v"], "x_user_id": ["v"]})[1] == ["x-sv-unseen", "x_user_id"]
