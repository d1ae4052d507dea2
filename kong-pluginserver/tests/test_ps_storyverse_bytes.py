"""The StoryVerse plugins on kong_pluginserver, driven like Kong with non-UTF-8 bytes (kong_driver.py): sv-jwt
refuses a non-ASCII token with 401; sv-quota charges a story creation whose query, headers and body carry such
bytes and sv-quota-log settles it from kong.log.serialize(); a login route's failed logins are struck."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import redis
from kong_driver import Request, Worker
from test_ps_kong_driver import Proc

PLUGINS = Path(__file__).resolve().parents[2] / "kong-plugins" / "plugins"
JWT = {"jwks_url": "http://127.0.0.1:9/jwks.json", "issuer": "http://issuer.test", "audience": "storyverse-api",
       "redis_host": "127.0.0.1", "redis_port": 6379}  # fmt: skip
STORY = {"policies": [{"name": "stories-create-minute", "limit": 20, "period": "minute", "by": "user"}],
         "plans": [{"tier": "basic", "daily": 2}], "quota": {"enabled": True, "name": "stories", "scope": "family"},
         "redis_host": "127.0.0.1", "redis_port": 6379}  # fmt: skip
LOGIN = {"policies": [{"name": "auth-login-minute", "limit": 1000, "period": "minute", "by": "ip"}],
         "redis_host": "127.0.0.1", "redis_port": 6379}  # fmt: skip
RAW_HEADERS = {b"x-latin": b"caf\xe9", b"x-\xff": b"\xfe", b"content-type": b"application/json"}


@pytest.fixture
def servers():
    procs = {n: Proc(PLUGINS / f"{n}.py", n, "kong_pluginserver", "--no-lua-style")
             for n in ("sv-jwt", "sv-quota", "sv-quota-log")}  # fmt: skip
    yield {n: Worker(p.path, n) for n, p in procs.items()}
    for p in procs.values():
        p.stop()


@pytest.mark.integration
def test_non_ascii_token_is_a_401(servers):
    req = Request(headers={**RAW_HEADERS, b"authorization": b"Bearer eyJ\xe9.eyJ.sig"})
    servers["sv-jwt"].handle_event(str(uuid.uuid4()), JWT, "access", req)
    assert servers["sv-jwt"].log == []
    assert req.exit is not None and req.exit[0] == 401
    assert json.loads(req.exit[1])["code"] == "invalid_token"


@pytest.mark.integration
def test_story_creation_with_raw_bytes_is_charged_and_failed_logins_are_struck(servers):
    family = uuid.uuid4().hex
    identity = {"sub": "u-" + family, "family_id": family, "tier": "basic", "role": "parent", "tz": "UTC"}
    pid_q, pid_l = str(uuid.uuid4()), str(uuid.uuid4())
    statuses = []
    for _ in range(3):  # basic: 2 stories a day here; the third is refused only if the first two were charged
        req = Request(headers=RAW_HEADERS, query={b"a": b"\xe9"}, body=b'{"title":"\xe9t\xe9"}', method=b"POST",
                      path=b"/api/v1/stories?a=%E9", shared={b"sv_identity": identity}, status=201)  # fmt: skip
        servers["sv-quota"].handle_event(pid_q, STORY, "access", req)
        if req.exit is None:
            servers["sv-quota-log"].handle_event(pid_q, STORY, "log", req)
        statuses.append(req.exit[0] if req.exit else 201)
    assert statuses == [201, 201, 429]
    assert servers["sv-quota"].log == [] and servers["sv-quota-log"].log == []

    client = redis.Redis()
    ip = b"10.9." + str(uuid.uuid4().int % 250).encode() + b".7"
    strikes = b"sv:quota:v1:{ip:" + ip + b"}:ab"  # the IP's abuse record (quota/lua/abuse.lua)
    client.delete(strikes)
    for _ in range(3):
        req = Request(headers=RAW_HEADERS, query={b"next": b"\xff"}, body=b'{"email":"\xe9@x"}', method=b"POST",
                      path=b"/api/v1/auth/login", ip=ip, status=401)  # fmt: skip
        servers["sv-quota"].handle_event(pid_l, LOGIN, "access", req)
        servers["sv-quota-log"].handle_event(pid_l, LOGIN, "log", req)
    assert servers["sv-quota-log"].log == []
    assert client.exists(strikes), sorted(client.keys("*"))[:20]
