"""Hostile client, round 3: what a hostile client tried against the whole layer in Kong's real mode (the repository's
kong.yml, the emulator NOT strict, every plugin server, the real auth and rate limiting services under gunicorn,
Redis, PostgreSQL, the sample backend). Each test is one probe; the ones marked xfail(strict=True) are findings that
are not fixed yet (the reason says exactly what is wrong).

One change to the rendered kong.yml: the characters service points at a header echo (`HeaderEcho`: every header
line it received, in order, duplicates kept), so the identity-spoofing probes see the upstream request as a backend
would, not only the five names the sample backend reads.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import random
import socket
import sys
import uuid
from pathlib import Path

import pytest
import redis
import requests
from e2e_support import (
    REPO,
    KongGateway,
    auth_env,
    rate_limiting_env,
    render_kong_yml,
    repo_plugins,
    start_auth_service,
    start_rate_limiting_service,
)
from kong_emulator.config.localenv import read_conf_values
from kong_emulator.testing import free_port, wait_port

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_journeys import PASSWORD, Client, claims

REDIS_DB = 15
DATABASE = "storyverse_hostile3"
TIMEOUT_S = 3
IDENTITY = ("x-user-id", "x-user-role", "x-family-id", "x-account-tier", "x-content-rating")


class HeaderEcho:
    """A backend that answers 200 with the header lines it received: [[name, value], ...] as sent to it."""

    def __init__(self) -> None:
        import http.server
        import json
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def _echo(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.dumps({"headers": [[k, v] for k, v in self.headers.raw_items()]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _echo

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def stack(backend):
    redis.Redis(db=REDIS_DB).flushdb()
    port, rls_port = free_port(), free_port()
    issuer = "http://hostile3.storyverse.test"
    env = auth_env(DATABASE, REDIS_DB, issuer, DEVICE_POLL_INTERVAL="1")
    auth = start_auth_service(port, env)
    auth_url, rls_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{rls_port}"
    echo = HeaderEcho()
    backends = {**backend, "characters": echo.url}
    gw = KongGateway(render_kong_yml(auth_url, backends, issuer, REDIS_DB, rls_url), repo_plugins())
    log = read_conf_values(REPO / "kong.conf")  # production's access log format (sv_access), not Kong's default
    gw.conf_extra = {
        "trusted_ips": "127.0.0.1",
        "nginx_worker_processes": "1",  # one pool of plugin-server connections: the SIGSTOP probe is deterministic
        "emulator_reply_timeout": str(TIMEOUT_S),  # Kong's plugin-server read timeout is 60 s
        # kong.conf keeps nginx's access log off (file-log is the one request line); an operator who turns it on
        # uses kong.conf's sv_access format as its comment says: that is the log the Referer probe reads
        "nginx_http_log_format": log["nginx_http_log_format"],
        "proxy_access_log": "/dev/stdout sv_access",
    }
    rls = None
    try:
        wait_port(port, seconds=60, proc=auth)
        rls = start_rate_limiting_service(rls_port, rate_limiting_env(env, auth_url))
        wait_port(rls_port, seconds=60, proc=rls)
        gw.start()
        gw.auth_url = auth_url
        yield gw
    finally:
        gw.stop()
        echo.close()
        for proc in (rls, auth):
            if proc is not None:
                proc.terminate()
                proc.wait(10)


class Caller(Client):
    """A client with an address of its own (X-Real-IP from a trusted peer): per-IP limits never cross tests."""

    def __init__(self, base: str) -> None:
        super().__init__(base)
        self.ip = f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"

    def call(self, method: str, path: str, json_body=None, token: str | None = None, **kw) -> requests.Response:
        kw["headers"] = {"X-Real-IP": self.ip, **kw.get("headers", {})}
        return super().call(method, path, json_body, token, **kw)


def new_parent(stack) -> Caller:
    """A basic family's parent (registered at the auth service itself: the gateway limits /auth/register per IP)."""
    email = f"parent-{uuid.uuid4().hex[:10]}@example.com"
    body = {"email": email, "password": PASSWORD, "display_name": "Robin", "time_zone": "Europe/London"}
    assert requests.post(stack.auth_url + "/api/auth/register", json=body, timeout=30).status_code == 202
    login = requests.post(stack.auth_url + "/api/auth/login", json={"email": email, "password": PASSWORD}, timeout=30)
    parent = Caller(stack.url)
    parent.take(login)
    return parent


def raw_request(stack, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """One HTTP/1.1 request written byte for byte; (status, body)."""
    host, port = stack.url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head + b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    status_line, _, rest = out.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


# -- identity headers --------------------------------------------------------------------------------------------------

SPOOFS = [
    ("X-User-Id", "evil"),
    ("x-user-id", "evil"),
    ("X_User_Id", "evil"),
    ("X-USER-ID", "evil"),
    ("x_uSeR-iD", "evil"),
    ("X-Family-Id", "evil-family"),
    ("X_Family_Id", "evil-family"),
    ("X-User-Role", "admin"),
    ("X_User_Role", "admin"),
    ("X-Account-Tier", "partner-premium"),
    ("X_Account_Tier", "partner-premium"),
    ("X-Content-Rating", "TV-MA"),
    ("X_Content_Rating", "TV-MA"),
    ("X-Sv-Quota-Bypass", "1"),
    ("x_sv_identity", "evil"),
]


def test_identity_headers_in_any_spelling_never_reach_a_backend(stack):
    parent = new_parent(stack)
    mine = claims(parent.access)
    host, port = stack.url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest("POST", "/api/v1/characters")
    for name, value in [("Authorization", f"Bearer {parent.access}"), ("X-Real-IP", parent.ip), *SPOOFS, *SPOOFS]:
        conn.putheader(name, value)  # every spoof twice: duplicates too
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", "2")
    conn.endheaders(b"{}")
    resp = conn.getresponse()
    body = resp.read()
    assert resp.status == 200, body  # the echo
    import json

    received = json.loads(body)["headers"]
    identity: dict[str, list[str]] = {}
    for name, value in received:
        norm = name.lower().replace("_", "-")
        assert not norm.startswith("x-sv-"), (name, value)
        if norm in IDENTITY:
            identity.setdefault(norm, []).append(value)
    expected = {"x-user-id": [mine["sub"]], "x-family-id": [mine["family_id"]], "x-user-role": ["parent"]}
    assert identity == {**expected, "x-account-tier": [mine["tier"]]}, received


def test_identity_spoof_behind_more_headers_than_the_strip_reads_is_refused(stack):
    """sv-edge strips from kong.request.get_headers(100): a spoof as header 121 would survive it; sv-jwt refuses the
    request before it gets that far."""
    parent = new_parent(stack)
    pad = b"".join(b"X-Pad-%d: 1\r\n" % i for i in range(120))
    head = b"POST /api/v1/characters HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n" % parent.access.encode()
    status, body = raw_request(stack, head + pad + b"X-Family-Id: evil-family\r\nX_User_Id: evil\r\n", b"{}")
    assert status == 400, body
    assert b"evil" not in body


# -- quota -------------------------------------------------------------------------------------------------------------


def test_twenty_parallel_creates_at_four_of_five_admit_exactly_one(stack):
    parent = new_parent(stack)
    for n in range(4):
        assert parent.call("POST", "/stories", {"title": f"Story {n}"}).status_code == 201
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = pool.map(lambda n: parent.call("POST", "/stories", {"title": f"Race {n}"}), range(20))
        statuses = [resp.status_code for resp in answers]
    assert statuses.count(201) == 1 and statuses.count(429) == 19, statuses
    assert len(parent.call("GET", "/stories").json()["items"]) == 5


PATH_TRICKS = [
    b"/api/v1//stories",
    b"//api/v1/stories",
    b"/api/v1/./stories",
    b"/api/v1/x/../stories",
    b"/api/v1/%2e%2e/v1/stories",
    b"/api/v1/st%6fries",
    b"/api/v1/stories/1/../../stories",
    b"/api/stories",
    b"/api/v1/stories/",
    b"/API/v1/stories",
    b"/api/v1/Stories",
    b"/api/v1/stories%2F",
    b"/api/v1/stories%00",
    b"/api/v1/stories;x",
    b"/api/v1/stories/%2e%2e",
    b"/api/v1/stories?a=%E9",
    b"/api/v1/stories?a=%FF%FE",
]


def test_no_path_spelling_creates_a_story_past_the_daily_quota(stack):
    """Every spelling of story creation either misses every route (404) or goes through the create route's plugins
    (429 once the family's 5 are used): never a 201 past the quota, never a 5xx."""
    parent = new_parent(stack)
    for n in range(5):
        assert parent.call("POST", "/stories", {"title": f"Story {n}"}).status_code == 201
    auth = b"Authorization: Bearer %s\r\nX-Real-IP: %s\r\nContent-Type: application/json\r\n"
    auth %= (parent.access.encode(), parent.ip.encode())
    for path in PATH_TRICKS:
        status, body = raw_request(stack, b"POST %s HTTP/1.1\r\nHost: x\r\n%s" % (path, auth), b'{"title": "more"}')
        assert status in (400, 404, 429), (path, status, body[:200])
    assert len(parent.call("GET", "/stories").json()["items"]) == 5


def test_the_emulator_routes_encoded_slash_and_trailing_newline_as_kong(stack):
    """Kong routes on var.request_uri normalised by kong.tools.uri.normalize, which keeps a reserved %2F encoded
    (kong/router/atc.lua:446, kong/router/utils.lua:57-63, kong/tools/uri.lua:28,48-58), with Rust regexes where `$`
    is the end of the text (kong/router/transform.lua:323-327): both are 404 there, and were routed to
    v1-stories-create by the emulator (nginx's decoded $uri, Python's `$` before a final newline)."""
    parent = new_parent(stack)
    auth = b"Authorization: Bearer %s\r\nX-Real-IP: %s\r\n" % (parent.access.encode(), parent.ip.encode())
    for path in (b"/api/v1%2Fstories", b"/api/v1/stories%0A"):
        status, body = raw_request(stack, b"POST %s HTTP/1.1\r\nHost: x\r\n%s" % (path, auth), b"{}")
        assert status == 404 and b"route_not_found" in body, (path, status, body[:200])


def test_a_basic_family_gets_no_more_than_five_stories_with_a_self_issued_api_key(stack):
    """Was a quota bypass: a parent's own key defaulted to `partner-basic`, whose token was metered at 100 a day on the
    family's counter. A parent's key is now a `family` key (its token's `tier` is the family's: basic, 5 a day);
    partner plans are an administrator's to assign (auth-service apikeys/service.py DEFAULT_PLANS)."""
    parent = new_parent(stack)
    created = parent.call("POST", "/auth/api-keys", {"name": "bedtime-app", "scopes": ["stories:write"]})
    assert created.status_code == 201, created.text
    exchanged = requests.post(
        stack.url + "/api/v1/auth/api-keys/token",
        headers={"Authorization": "ApiKey " + created.json()["key"], "X-Real-IP": parent.ip},
        timeout=30,
    )
    assert exchanged.status_code == 200, exchanged.text
    key_token = exchanged.json()["access_token"]
    statuses = [parent.call("POST", "/stories", {"title": f"Key {n}"}, token=key_token).status_code for n in range(6)]
    assert statuses.count(201) <= 5, statuses


# -- log secrecy -----------------------------------------------------------------------------------------------------


def _log_lines(stack, secret: str, file_log: bool) -> list[str]:
    """Lines of the gateway's output holding `secret`: file-log's JSON records, or the other lines (access log,
    error log, plugin servers)."""
    lines = [line for line in stack.output().splitlines() if secret in line]
    return [line for line in lines if line.lstrip().startswith("{") == file_log]


def _wait_logged(stack, marker: str, file_log: bool) -> None:
    """Until the request whose User-Agent holds `marker` is in that log (file-log's line comes after the access
    log's)."""
    import time

    deadline = time.monotonic() + 15
    while not _log_lines(stack, marker, file_log) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _log_lines(stack, marker, file_log), "the request was never logged"


def test_a_reset_token_in_the_referer_never_reaches_the_file_log(stack):
    """A web app served from the API's origin sends its page URL as Referer: the password-reset page's URL holds the
    reset token (auth-service RESET_URL `...reset-password?token={token}`), e-mail verification's and family
    invitations' likewise. file-log records request headers: the Referer's query must not be among them."""
    secret = "rst" + uuid.uuid4().hex
    marker = uuid.uuid4().hex
    resp = requests.post(
        stack.url + "/api/v1/auth/password/reset",
        json={"token": "x", "password": PASSWORD},
        headers={"Referer": f"{stack.url}/reset-password?token={secret}&x=1", "User-Agent": "probe-" + marker},
        timeout=30,
    )
    assert resp.status_code in (400, 401, 404, 422), resp.text
    _wait_logged(stack, marker, file_log=True)
    assert not _log_lines(stack, secret, file_log=True)


def test_a_reset_token_in_the_referer_never_reaches_the_access_log(stack):
    """kong.conf's sv_access format has no $http_referer: the Referer's query may carry a reset token."""
    secret = "rst" + uuid.uuid4().hex
    marker = uuid.uuid4().hex
    requests.post(
        stack.url + "/api/v1/auth/password/reset",
        json={"token": "x", "password": PASSWORD},
        headers={"Referer": f"{stack.url}/reset-password?token={secret}", "User-Agent": "probe-" + marker},
        timeout=30,
    )
    _wait_logged(stack, marker, file_log=False)
    assert not _log_lines(stack, secret, file_log=False)


def test_query_token_spellings_never_reach_the_file_log(stack):
    """sv-edge redacts a secret query argument by its decoded, case-folded name, not only as spelled in kong.yml."""
    parent = new_parent(stack)
    leaked = []
    for spelling in ("access_token%00={t}", "ACCESS_TOKEN={t}", "access%5Ftoken={t}"):
        marker = uuid.uuid4().hex
        query = spelling.format(t=parent.access)
        requests.get(f"{stack.url}/api/v1/stories?{query}", headers={"User-Agent": "probe-" + marker}, timeout=30)
        _wait_logged(stack, marker, file_log=True)
        if _log_lines(stack, parent.access.split(".")[2], file_log=True):
            leaked.append(spelling)
    assert not leaked, leaked


# -- plugin server stopped past the timeout, then continued ---------------------------------------------------------


def test_a_plugin_server_continued_after_the_timeout_answers_503_never_500(stack):
    """After a plugin server is SIGSTOPped past Kong's plugin-server read timeout and then continued, every connection
    that timed out went back to Kong's pool (mp_rpc.lua:195-198 setkeepalive) with the late reply still owed on it:
    an event sent on one meets a reply with another msgid (mp_rpc.lua:207-209), a Lua error, and Kong answers 500
    (kong/init.lua:399-414). sv-edge's header_filter answers the guard's 503 plugin_unavailable instead: the request
    never reached the guard (docs/architecture.md §12)."""
    import os
    import signal
    import time

    from test_fail_closed_e2e import server_pid

    def answer(resp: requests.Response) -> tuple:
        if resp.status_code != 503:
            return (resp.status_code,)
        return 503, resp.json().get("code"), bool(resp.headers.get("Retry-After"))

    parent = new_parent(stack)
    assert parent.call("GET", "/stories").status_code == 200
    pid = server_pid(stack, "sv-rbac")
    os.kill(pid, signal.SIGSTOP)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        try:
            stopped = [answer(r) for r in pool.map(lambda _: parent.call("GET", "/stories"), range(3))]
            # events sent on the timed-out connections while the server is still stopped; continued meanwhile
            pending = [pool.submit(parent.call, "GET", "/stories") for _ in range(3)]
            time.sleep(1)
        finally:
            os.kill(pid, signal.SIGCONT)
        after = [answer(f.result()) for f in pending]
    unavailable = (503, "plugin_unavailable", True)
    assert stopped == [unavailable] * 3, stopped
    assert all(a in ((200,), unavailable) for a in after), after
    assert "sv-edge guard: a plugin failed before the guard" in stack.output()  # the late replies' Lua errors
