"""Tokens and secrets never reach the auth service's logs (issue 15, item 8): the service runs under real gunicorn
started as the image starts it (working directory = the one holding wsgi.py and gunicorn.conf.py, which gunicorn
reads from there by default), an access log whose format asks for everything that could carry a credential (raw
request line, query, Referer, Authorization and Cookie headers), its error log and its JSON application log."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from auth_support import PASSWORD, TEST_DB_URL, TEST_REDIS_URL

AUTH_DIR = Path(__file__).resolve().parents[2] / "auth-service"
GREEDY_FORMAT = '%(h)s %(u)s "%(r)s" %(q)s %(U)s "%(f)s" "%({authorization}i)s" "%({cookie}i)s" "%({x-api-key}i)s"'
QUERY_SECRET = "qs-secret-4c1f9e"
REFERER_SECRET = "referer-secret-77ab"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def gunicorn_logs(migrated_db, tmp_path):
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": TEST_DB_URL, "REDIS_URL": TEST_REDIS_URL, "LOG_LEVEL": "DEBUG"}
    env.update(ENUMERATION_FLOOR_SECONDS="0", TRUST_PROXY_HOPS="0", ARGON2_MEMORY_COST="8", ARGON2_TIME_COST="1")
    argv = [sys.executable, "-m", "gunicorn", "-w", "1", "-k", "gthread", "--threads", "2"]
    argv += ["-b", f"127.0.0.1:{port}", "--access-logfile", str(tmp_path / "access.log")]
    argv += ["--access-logformat", GREEDY_FORMAT, "--error-logfile", str(tmp_path / "error.log"), "wsgi:app"]
    out = (tmp_path / "stdout.log").open("wb")
    proc = subprocess.Popen(argv, env=env, cwd=AUTH_DIR, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(f"{base}/healthz", timeout=10)
            break
        except requests.RequestException:
            assert proc.poll() is None and time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.2)
    yield base, tmp_path
    proc.terminate()
    proc.wait(timeout=15)
    out.close()


def test_no_token_or_secret_in_any_log(gunicorn_logs):
    base, logs = gunicorn_logs
    email = "logs@example.com"
    requests.post(f"{base}/api/auth/register", json={"email": email, "password": PASSWORD, "display_name": "L"})
    tokens = requests.post(f"{base}/api/auth/login", json={"email": email, "password": PASSWORD}, timeout=10).json()
    access, refresh = tokens["access_token"], tokens["refresh_token"]
    bearer = {"Authorization": f"Bearer {access}", "Referer": f"https://app.example/cb?code={REFERER_SECRET}"}
    requests.get(f"{base}/api/auth/me?access_token={access}&x={QUERY_SECRET}", headers=bearer, timeout=10)
    requests.get(f"{base}/api/auth/me?access_token={QUERY_SECRET}", timeout=10)
    requests.post(f"{base}/api/auth/refresh", json={"refresh_token": refresh}, timeout=10)
    requests.post(f"{base}/api/auth/refresh?refresh_token={refresh}", json={"refresh_token": refresh}, timeout=10)
    requests.get(f"{base}/oauth/authorize?response_type=code&client_id=x&state={QUERY_SECRET}", timeout=10)
    requests.post(f"{base}/oauth/token", data={"grant_type": "refresh_token", "refresh_token": refresh}, timeout=10)
    requests.get(f"{base}/api/auth/me", headers={"Cookie": f"s={QUERY_SECRET}", "X-Api-Key": QUERY_SECRET}, timeout=10)
    time.sleep(0.5)  # gunicorn writes the access line after the response
    written = {name: (logs / name).read_text() for name in ("access.log", "error.log", "stdout.log")}
    assert written["access.log"].count("/api/auth/me") >= 3  # the access log is on, and it names the paths
    assert '"event": "login"' in written["stdout.log"]  # and the application log is on
    for name, text in written.items():
        for secret in (access, refresh, QUERY_SECRET, REFERER_SECRET, PASSWORD, access.split(".")[2]):
            assert secret not in text, f"{name} holds a secret"
