"""`make run` (scripts/run_stack.py) as a newcomer sees it: the whole stack, TLS on every hop, then a short banner with
the URLs after the startup noise, then one line per request while the full JSON record goes to a file."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import requests
import yaml
from e2e_support import REPO


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    out = run_dir / "terminal.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KONG_")}
    env.update(
        SV_RUN_DIR=str(run_dir), DATABASE_URL="postgresql+psycopg2://postgres@127.0.0.1:5432/storyverse_make_run"
    )
    with open(out, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "scripts/run_stack.py"], cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 150
        while "stack is up" not in out.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, out.read_text(errors="replace")[-3000:]
            time.sleep(0.5)
        yield {"dir": run_dir, "out": out}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def _terminal(stack, until: str, seconds: float = 20) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        text = stack["out"].read_text(errors="replace")
        if until in text:
            return text
        time.sleep(0.2)
    raise AssertionError(f"{until!r} never printed:\n{text[-3000:]}")


def test_requests_are_one_short_line_each_and_json_in_the_file(stack):
    resp = requests.get("https://localhost:8443/api/v1/docs", timeout=20, verify=str(stack["dir"] / "tls" / "ca.crt"))
    assert resp.status_code == 200
    request_id = resp.headers["X-Request-Id"]
    text = _terminal(stack, request_id)
    (line,) = [line for line in text.splitlines() if request_id in line]
    assert re.fullmatch(rf"GET /api/v1/docs 200 \d+ms {request_id}", line)
    records = [json.loads(x) for x in (stack["dir"] / "access.log").read_text().splitlines() if request_id in x]
    assert len(records) == 1 and records[0]["request_id"] == request_id and records[0]["response"]["status"] == 200


def test_the_terminal_has_the_banner_and_each_process_its_log_file(stack):
    text = _terminal(stack, "stack is up")
    before, banner = text[: text.index("stack is up")], text[text.index("stack is up") :]
    assert before.count("[run] starting ") == 4  # backend, auth, rate limiting, emulator: one line each
    for noise in ("Booting worker", "Running upgrade", "emulator listening", "[pluginserver]"):
        assert noise not in text  # in run/<name>.log, not on the terminal
    for url in ("http://localhost:8000/", "https://localhost:8443/", "/api/v1/docs", "https://localhost:9000/"):
        assert url in banner
    assert "https://localhost:9200/" in banner and "access.log" in banner
    emulator = (stack["dir"] / "emulator.log").read_text()
    assert "emulator listening on https://127.0.0.1:8443" in emulator
    assert "Booting worker" in (stack["dir"] / "auth.log").read_text()
    assert "body_filter" not in emulator  # no per-instance caveat (the stale body_filter warning)
    assert emulator.count("custom Lua plugin 'sv-edge'") == 1  # one line for its dozens of instances


def test_every_hop_behind_kong_is_tls(stack):
    config = yaml.safe_load((stack["dir"] / "kong.yml").read_text())
    (ca,) = config["ca_certificates"]
    assert ca["cert"] == (stack["dir"] / "tls" / "ca.crt").read_text()
    assert len(config["services"]) == 6  # auth, four backends, rate limiting
    for svc in config["services"]:
        assert svc["url"].startswith("https://") and svc["tls_verify"] is True and svc["ca_certificates"] == [ca["id"]]
    jwt = next(p for p in config["plugins"] if p["name"] == "sv-jwt")
    assert jwt["config"]["jwks_url"].startswith("https://")
    with pytest.raises(requests.ConnectionError):
        requests.get("http://127.0.0.1:9000/healthz", timeout=5)  # the auth service speaks TLS only
