"""The refresh fast path (auth-service auth/fast_refresh.py) against the Flask path on the real server: two gunicorn
auth services, REFRESH_FAST_PATH on and off, each on its own database and Redis db. Requests are written by hand on
sockets, so what only a real server sees is compared too: header order, duplicate headers (gunicorn joins or refuses
them), ``Expect: 100-continue``, HTTP/1.0, absolute-form targets, chunked bodies, pipelining; then twenty parallel
refreshes of one token, Redis stalled past the client's socket timeout, and PostgreSQL refusing connections while a
refresh needs it (a session's first refresh reads its claims there). Each answer must be the other path's, byte for
byte but for dates, request ids, lengths and token values; the access line must time the request alike.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest
import redis
import requests
from e2e_support import auth_env, start_auth_service
from kong_emulator.testing import free_port, wait_port

ISSUER = "http://refresh-fast-path.storyverse.test"
SERVICES = {"fast": ("true", "storyverse_e2e_refresh_fast", 2), "flask": ("false", "storyverse_e2e_refresh_flask", 6)}
GRACE_SECONDS = 3  # REFRESH_GRACE_SECONDS here: the reuse after a parallel burst is reached without a long wait
PASSWORD = "correct horse battery staple twice"
MASKED_HEADERS = (b"date", b"x-request-id", b"content-length")
MASKED_FIELDS = ("access_token", "refresh_token", "session_id", "request_id")


@dataclass
class Service:
    name: str
    port: int
    database: str
    redis_db: int
    log: Path
    proc: object
    accounts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tokens(self) -> dict:
        """A new account's login answer (a new session whose claims are not cached yet)."""
        self.accounts += 1
        email = f"{self.name}-{self.accounts}@example.com"
        body = {"email": email, "password": PASSWORD, "display_name": "Pat", "time_zone": "Europe/Paris"}
        assert requests.post(f"{self.url}/api/auth/register", json=body, timeout=30).status_code == 202
        login = requests.post(f"{self.url}/api/auth/login", json={"email": email, "password": PASSWORD}, timeout=30)
        assert login.status_code == 200, login.text
        return login.json()

    def refresh(self, token: str, **headers: str) -> requests.Response:
        return requests.post(f"{self.url}/api/auth/refresh", json={"refresh_token": token}, headers=headers, timeout=30)

    def access_line(self, request_id: str) -> dict:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for line in self.log.read_text(errors="replace").splitlines():
                if (
                    line.startswith("{")
                    and f'"request_id": "{request_id}"' in line
                    and '"storyverse_auth.access"' in line
                ):
                    return json.loads(line)
            time.sleep(0.1)
        raise AssertionError(f"{self.name}: no access line for {request_id}")


def _wait_healthy(service: Service) -> None:
    wait_port(service.port, seconds=60, proc=service.proc)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{service.url}/healthz", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{service.name} auth service not healthy")


@pytest.fixture(scope="module")
def services(tmp_path_factory) -> dict[str, Service]:
    logs = tmp_path_factory.mktemp("refresh-fast-path")
    started: dict[str, Service] = {}
    try:
        for name, (fast, database, redis_db) in SERVICES.items():
            redis.Redis(db=redis_db).flushdb()
            env = auth_env(database, redis_db, ISSUER, REFRESH_FAST_PATH=fast, REFRESH_GRACE_SECONDS=str(GRACE_SECONDS))
            env["LOG_LEVEL"] = "INFO"  # the access lines
            port, log = free_port(), logs / f"{name}.log"
            started[name] = Service(name, port, database, redis_db, log, start_auth_service(port, env, log=log))
        for service in started.values():
            _wait_healthy(service)
        yield started
    finally:
        for service in started.values():
            service.proc.terminate()
            service.proc.wait(10)


# -- raw HTTP/1.1 ------------------------------------------------------------------------------------------------------


def _exchange(port: int, request: bytes, answers: int = 1) -> list[tuple]:
    """Send ``request`` as is; the ``answers`` final responses read back (1xx interim answers are kept in the list)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        buffer, found = b"", []
        while sum(1 for status, *_ in found if not status.split(b" ")[1].startswith(b"1")) < answers:
            parsed = _parse_one(buffer)
            if parsed is None:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buffer += chunk
                continue
            answer, buffer = parsed
            found.append(answer)
    return found


def _parse_one(buffer: bytes) -> tuple[tuple, bytes] | None:
    head, sep, rest = buffer.partition(b"\r\n\r\n")
    if not sep:
        return None
    status, *lines = head.split(b"\r\n")
    headers = [tuple(part.strip() for part in line.split(b":", 1)) for line in lines]
    length = next((int(v) for k, v in headers if k.lower() == b"content-length"), 0)
    if len(rest) < length:
        return None
    return (status, headers, rest[:length]), rest[length:]


def _normal(answer: tuple) -> tuple:
    status, headers, body = answer
    headers = [(k, b"*" if k.lower() in MASKED_HEADERS else v) for k, v in headers]
    try:
        document = json.loads(body)
    except ValueError:
        return status, headers, body
    if isinstance(document, dict):
        document = {k: ("*" if k in MASKED_FIELDS else v) for k, v in document.items()}
    return status, headers, document


def _request(token: str, start=b"POST /api/auth/refresh HTTP/1.1", headers=b"", body: bytes | None = None) -> bytes:
    body = json.dumps({"refresh_token": token}).encode() if body is None else body.replace(b"TOKEN", token.encode())
    length = b"" if b"Transfer-Encoding" in headers else b"Content-Length: %d\r\n" % len(body)
    return start + b"\r\nHost: auth.test\r\n" + headers + length + b"\r\n" + body


def _chunked(token: str) -> bytes:
    body = json.dumps({"refresh_token": token}).encode()
    head = b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
    return _request(token, headers=head, body=b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))


JSON = b"Content-Type: application/json\r\n"
RAW_REQUESTS = {
    "plain": (lambda t: _request(t, headers=JSON), b"200"),
    "expect-100-continue": (lambda t: _request(t, headers=JSON + b"Expect: 100-continue\r\n"), b"200"),
    "http-1.0": (lambda t: _request(t, start=b"POST /api/auth/refresh HTTP/1.0", headers=JSON), b"200"),
    "absolute-form": (
        lambda t: _request(t, start=b"POST http://auth.test/api/auth/refresh HTTP/1.1", headers=JSON),
        b"200",
    ),
    "percent-encoded-path": (lambda t: _request(t, start=b"POST /api/auth/%72efresh HTTP/1.1", headers=JSON), b"200"),
    "lower-case-names": (lambda t: _request(t, headers=b"content-type: application/json\r\n"), b"200"),
    "two-request-ids": (lambda t: _request(t, headers=JSON + b"X-Request-Id: a\r\nX-Request-Id: b\r\n"), b"200"),
    "forwarded-chain": (
        lambda t: _request(t, headers=JSON + b"X-Forwarded-For: 198.51.100.7, 203.0.113.9\r\n"),
        b"200",
    ),
    "forwarded-forged": (lambda t: _request(t, headers=JSON + b"X-Forwarded-For: 198.51.100.7, nope\r\n"), b"400"),
    "chunked": (_chunked, b"200"),
    "two-content-types": (lambda t: _request(t, headers=JSON + b"Content-Type: text/plain\r\n"), b"400"),
    "non-ascii-token": (lambda t: _request(t, headers=JSON, body=b'{"refresh_token": "TOKEN\xc3\xa9"}'), b"401"),
    "escaped-token": (lambda t: _request(t, headers=JSON, body=b'{"refresh_token": "\\u0073vrt_x"}'), b"401"),
}


@pytest.mark.parametrize("case", list(RAW_REQUESTS))
def test_a_raw_request_gets_the_same_answer_from_both_paths(services, case):
    build, status = RAW_REQUESTS[case]
    answers = {
        name: [_normal(a) for a in _exchange(s.port, build(s.tokens()["refresh_token"]))]
        for name, s in services.items()
    }
    assert answers["fast"][-1][0].split(b" ")[1] == status
    assert answers["fast"] == answers["flask"]


def test_a_gunicorn_refused_content_length_is_refused_alike(services):
    for length in (b"\xb2", b"+52", b"52, 52"):
        found = {}
        for name, service in services.items():
            request = _request(service.tokens()["refresh_token"], headers=JSON)
            request = request.replace(b"Content-Length: ", b"Content-Length: " + length + b"\r\nX-Was: ")
            found[name] = [_normal(a) for a in _exchange(service.port, request)]
        assert found["fast"] == found["flask"] and found["fast"][0][0].split(b" ")[1] == b"400", length


def test_pipelined_refreshes_are_answered_in_order_alike(services):
    found = {}
    for name, service in services.items():
        first, second = service.tokens()["refresh_token"], service.tokens()["refresh_token"]
        ids = (b"X-Request-Id: pipe-%s-1\r\n" % name.encode(), b"X-Request-Id: pipe-%s-2\r\n" % name.encode())
        request = _request(first, headers=JSON + ids[0]) + _request(second, headers=JSON + ids[1])
        answers = _exchange(service.port, request, answers=2)
        assert [dict(headers)[b"X-Request-Id"] for _, headers, _ in answers] == [i[14:-2] for i in ids]
        found[name] = [_normal(a) for a in answers]
    assert found["fast"] == found["flask"] and [a[0] for a in found["fast"]] == [b"HTTP/1.1 200 OK"] * 2


# -- concurrency and backing services ------------------------------------------------------------------------------


def _burst(service: Service, token: str, count: int = 20) -> list[tuple[int, str]]:
    barrier, results, lock = threading.Barrier(count), [], threading.Lock()

    def one() -> None:
        barrier.wait()
        response = service.refresh(token)
        outcome = (response.status_code, response.json().get("refresh_token") or response.json()["code"])
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_twenty_parallel_refreshes_yield_one_successor_then_a_reuse_alike(services):
    """Two gunicorn workers of four threads each: one rotation, nineteen answers inside the grace window with the
    same successor; once the window has passed the old token is a reuse that ends the session."""
    seen = {}
    for name, service in services.items():
        token = service.tokens()["refresh_token"]
        results = _burst(service, token)
        successors = {value for status, value in results if status == 200}
        assert len(successors) == 1, (name, Counter(results))
        successor = successors.pop()
        time.sleep(GRACE_SECONDS + 1)
        reuse = service.refresh(token)
        ended = service.refresh(successor)
        seen[name] = (
            sorted(status for status, _ in results),
            reuse.status_code,
            reuse.json()["code"],
            ended.status_code,
        )
    assert seen["fast"] == seen["flask"] == ([200] * 20, 401, "refresh_token_reused", 401)


def test_a_redis_stall_past_the_socket_timeout_is_the_same_503_and_is_timed_alike(services):
    found = {}
    for name, service in services.items():
        token = service.tokens()["refresh_token"]
        redis.Redis(db=service.redis_db).execute_command("CLIENT", "PAUSE", "2600", "WRITE")  # the client waits 2 s
        response = service.refresh(token, **{"X-Request-Id": f"stall-{name}"})
        time.sleep(0.8)  # the pause ends
        found[name] = (response.status_code, response.json()["code"], response.headers["Content-Type"])
        assert service.access_line(f"stall-{name}")["duration_ms"] >= 1900, name  # the fast path logged ~1 ms
        assert service.refresh(token).status_code == 200  # nothing rotated: the token still works
    assert found["fast"] == found["flask"] == (503, "unavailable", "application/problem+json")


def _until_answered(service: Service, token: str) -> int:
    """The token's status once the service reaches PostgreSQL again: each pooled connection the test terminated
    fails once (503; DB_POOL_PRE_PING is off by default). The rotation was made before the failed read, so inside
    the grace window the token is answered with its successor."""
    deadline = time.monotonic() + GRACE_SECONDS - 1
    status = service.refresh(token).status_code
    while status == 503 and time.monotonic() < deadline:
        status = service.refresh(token).status_code
    return status


def test_postgresql_refusing_connections_on_a_first_refresh_is_the_same_503_alike(services):
    found = {}
    admin = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    admin.autocommit = True
    try:
        for name, service in services.items():
            token = service.tokens()["refresh_token"]
            with admin.cursor() as cur:
                cur.execute(f'ALTER DATABASE "{service.database}" ALLOW_CONNECTIONS false')
                cur.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (service.database,)
                )
            try:
                response = service.refresh(token, **{"X-Request-Id": f"pg-{name}"})
            finally:
                with admin.cursor() as cur:
                    cur.execute(f'ALTER DATABASE "{service.database}" ALLOW_CONNECTIONS true')
            found[name] = (response.status_code, response.json()["code"], _until_answered(service, token))
    finally:
        admin.close()
    assert found["fast"] == found["flask"] == (503, "unavailable", 200)
