"""Access logging, caching and the OAuth routes, through the whole layer: the repository's kong.yml rendered for this
test (its file-log writing to a temporary file), the Kong emulator with every plugin server (it runs file-log with
its Lua custom fields and proxy-cache natively), the real auth service and the sample backend.
"""

from __future__ import annotations

import json
import re
import time
import uuid

import pytest
import redis
import requests
from e2e_support import KongGateway, auth_env, repo_plugins, start_auth_service
from kong_emulator.testing import free_port, wait_port

REDIS_DB = 8  # shared by the auth service (revocations) and the plugins (denylist, limits) in this module
DATABASE = "storyverse_e2e_extras"
ISSUER = "http://extras.storyverse.test"
PASSWORD = "extras: a long and sleepy password"


@pytest.fixture(scope="module")
def stack(backend, tmp_path_factory):
    redis.Redis(db=REDIS_DB).flushdb()
    access_log = tmp_path_factory.mktemp("access") / "access.log"
    port = free_port()
    auth = start_auth_service(port, auth_env(DATABASE, REDIS_DB, ISSUER))
    auth_url = f"http://127.0.0.1:{port}"
    import storyverse_gateway_config as gateway_config

    settings = gateway_config.load_settings(
        overrides={
            "services": {"auth": auth_url, **backend},
            "jwt": {"jwks_url": auth_url + "/.well-known/jwks.json", "issuer": ISSUER},
            "redis": {"redis_database": REDIS_DB},
            "access_log": str(access_log),
        }
    )
    gw = KongGateway(gateway_config.render(settings), repo_plugins())
    try:
        wait_port(port, seconds=60, proc=auth)
        gw.start()
        gw.access_log = access_log
        yield gw
    finally:
        failures = gw.strict_failures()
        gw.stop()
        auth.terminate()
        auth.wait(10)
    assert not failures, "\n".join(failures)


def sign_up(url: str) -> dict:
    email = f"extras-{uuid.uuid4().hex[:10]}@example.com"
    body = {"email": email, "password": PASSWORD, "display_name": "Sam", "time_zone": "Europe/Berlin"}
    assert requests.post(url + "/api/v1/auth/register", json=body, timeout=15).status_code == 202
    login = requests.post(url + "/api/v1/auth/login", json={"email": email, "password": PASSWORD}, timeout=15)
    assert login.status_code == 200, login.text
    tokens = login.json()
    sub = json.loads(_b64(tokens["access_token"].split(".")[1]))["sub"]
    return {"access": tokens["access_token"], "refresh": tokens["refresh_token"], "sub": sub,
            "auth": {"Authorization": f"Bearer {tokens['access_token']}"}}  # fmt: skip


def _b64(part: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def log_lines(stack, request_ids: list[str], seconds: float = 10.0) -> dict[str, dict]:
    """The access-log lines of these requests (the log phase runs after the response has gone: wait for them)."""
    deadline = time.monotonic() + seconds
    while True:
        text = stack.access_log.read_text() if stack.access_log.exists() else ""
        records = [json.loads(line) for line in text.splitlines()]  # every line is one JSON document
        by_id = {r.get("request_id"): r for r in records}
        if all(i in by_id for i in request_ids) or time.monotonic() > deadline:
            return {i: by_id.get(i) for i in request_ids}
        time.sleep(0.1)


# -- request/response logging -----------------------------------------------------------------------------------


def test_one_json_line_per_request_with_the_operators_fields_and_no_secret(stack):
    user = sign_up(stack.url)
    listed = requests.get(
        stack.url + "/api/v1/stories?page=1",
        headers={**user["auth"], "Cookie": "session=cookie-secret-value"},
        timeout=15,
    )
    assert listed.status_code == 200
    anonymous = requests.get(stack.url + "/.well-known/jwks.json", timeout=15)
    refused = requests.get(stack.url + "/api/v1/stories", timeout=15)  # no token: 401
    leaked = requests.get(f"{stack.url}/api/v1/universes?access_token={user['access']}&x=1", headers=user["auth"],
                          timeout=15)  # fmt: skip
    refreshed = requests.post(stack.url + "/api/auth/refresh", json={"refresh_token": user["refresh"]}, timeout=15)
    assert refreshed.status_code == 200, refreshed.text
    ids = [r.headers["X-Request-Id"] for r in (listed, anonymous, refused, leaked, refreshed)]
    lines = log_lines(stack, ids)

    line = lines[ids[0]]
    assert line is not None, "no access-log line for the story list"
    assert line["request_id"] == ids[0] and line["request"]["id"]  # ours (X-Request-Id) and Kong's own
    assert line["route"]["name"] == "v1-stories-list" and line["service"]["name"] == "stories"
    assert line["user_id"] == user["sub"]
    assert line["response"]["status"] == 200 and line["request"]["method"] == "GET"
    assert line["upstream_uri"].startswith("/api/stories")  # what the service was asked (version stripped)
    lat = line["latencies"]
    assert lat["proxy"] >= 0 and lat["kong"] >= 0 and lat["request"] >= lat["proxy"]  # upstream and gateway time
    # bytes: Kong's request.size is nginx's $request_length (line + headers + body); the emulator counts the body
    assert line["response"]["size"] > 0 and line["request"]["size"] >= 0
    assert line["request"]["headers"]["authorization"] == "REDACTED"  # Kong's own redaction
    assert "cookie" not in line["request"]["headers"]

    assert "user_id" not in lines[ids[1]] and lines[ids[1]]["route"]["name"] == "jwks"  # public, anonymous
    assert lines[ids[2]]["response"]["status"] == 401 and "user_id" not in lines[ids[2]]
    uni = lines[ids[3]]
    assert uni["request"]["querystring"]["access_token"] == "REDACTED" and uni["request"]["querystring"]["x"] == "1"
    assert "access_token=REDACTED&x=1" in uni["request"]["uri"] and "access_token=REDACTED" in uni["request"]["url"]
    assert lines[ids[4]]["route"]["name"] == "v1-auth-refresh"  # the alias is the same route
    assert lines[ids[4]]["request"]["size"] > 0  # the body is counted, never written

    text = stack.access_log.read_text()
    for secret in (user["access"], user["refresh"], refreshed.json()["access_token"], refreshed.json()["refresh_token"],
                   PASSWORD, "cookie-secret-value"):  # fmt: skip
        assert secret not in text
    assert not re.search(r"Bearer\s+[\w-]+\.", text) and "eyJ" not in text  # no JWT, not even a part of one


# -- caching -------------------------------------------------------------------------------------------------------


def test_universes_are_cached_per_caller_and_stories_never(stack):
    parent, other = sign_up(stack.url), sign_up(stack.url)
    made = requests.post(stack.url + "/api/v1/universes", json={"name": "Moonland"}, headers=parent["auth"],
                         timeout=15)  # fmt: skip
    assert made.status_code == 201 and "X-Cache-Status" not in made.headers  # a POST is never cached

    first = requests.get(stack.url + "/api/v1/universes", headers=parent["auth"], timeout=15)
    second = requests.get(stack.url + "/api/v1/universes", headers=parent["auth"], timeout=15)
    assert (first.headers["X-Cache-Status"], second.headers["X-Cache-Status"]) == ("Miss", "Hit")
    assert second.json() == first.json() and second.headers["Content-Type"].startswith("application/json")
    assert int(second.headers["Age"]) <= 30
    assert second.headers["X-Request-Id"] != first.headers["X-Request-Id"]  # a hit is still its own request
    # sv-edge gives a hit this request's own RateLimit fields (sv-quota counted it), never the stored ones
    assert first.headers["RateLimit"] != second.headers["RateLimit"]
    assert (
        ";r=" in second.headers["RateLimit"] and second.headers["RateLimit-Policy"] == first.headers["RateLimit-Policy"]
    )
    item = made.json()["item"]["id"]
    one = [requests.get(f"{stack.url}/api/universes/{item}", headers=parent["auth"], timeout=15) for _ in range(2)]
    assert [r.headers["X-Cache-Status"] for r in one] == ["Miss", "Hit"]  # the alias and the item route too

    theirs = requests.get(stack.url + "/api/v1/universes", headers=other["auth"], timeout=15)
    assert theirs.headers["X-Cache-Status"] == "Miss"  # never another caller's answer
    assert theirs.json()["received_identity"]["X-User-Id"] == other["sub"]

    # a hit still passes authentication and the rate limits first (they run before proxy-cache)
    assert requests.get(stack.url + "/api/v1/universes", timeout=15).status_code == 401
    forged = {"Authorization": "Bearer " + parent["access"][:-4] + "AAAA"}
    assert requests.get(stack.url + "/api/v1/universes", headers=forged, timeout=15).status_code == 401
    spoofed = {**other["auth"], "X-User-Id": parent["sub"]}  # the key's X-User-Id is sv-jwt's, never the client's
    assert requests.get(stack.url + "/api/v1/universes", headers=spoofed, timeout=15).headers["X-Cache-Status"] == "Hit"
    mine = requests.get(stack.url + "/api/v1/universes", headers=spoofed, timeout=15).json()
    assert mine["received_identity"]["X-User-Id"] == other["sub"]

    stories = [requests.get(stack.url + "/api/v1/stories", headers=parent["auth"], timeout=15) for _ in range(2)]
    assert all(r.status_code == 200 and "X-Cache-Status" not in r.headers for r in stories)
    created = requests.post(stack.url + "/api/v1/stories", json={"title": "Fresh"}, headers=parent["auth"], timeout=15)
    assert created.status_code == 201
    after = requests.get(stack.url + "/api/v1/stories", headers=parent["auth"], timeout=15).json()
    assert created.json()["item"] in after["items"]  # personal and live: never from a cache


# -- OAuth ---------------------------------------------------------------------------------------------------------


def test_oauth_routes_reach_the_provider_and_keep_its_error_format(stack):
    token = requests.post(stack.url + "/oauth/token", data={"grant_type": "authorization_code", "code": "nope",
                                                             "client_id": "no-such-client"}, timeout=15)  # fmt: skip
    assert token.status_code in (400, 401), token.text
    assert token.headers["Content-Type"].startswith("application/json")  # RFC 6749 §5.2, not a problem document
    assert token.json()["error"] in ("invalid_client", "invalid_grant", "invalid_request")
    assert token.headers["X-Request-Id"] and token.headers["RateLimit-Policy"].startswith('"oauth-token-minute"')

    info = requests.get(stack.url + "/oauth/userinfo", timeout=15)
    assert info.status_code == 401 and info.json()["error"] == "invalid_token"
    assert info.headers["WWW-Authenticate"].startswith("Bearer")

    page = requests.get(stack.url + "/oauth/authorize?response_type=code&client_id=nobody", timeout=15)
    assert page.status_code in (200, 302, 400) and page.headers["Content-Type"].startswith("text/html")

    assert requests.get(stack.url + "/oauth/token", timeout=15).status_code == 404  # methods are matched
    assert requests.post(stack.url + "/api/v1/oauth/token", timeout=15).status_code == 404  # unversioned only
