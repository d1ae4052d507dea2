"""Per-pod auth metrics under gunicorn (prometheus_client multiprocess mode): two "pods" of the real auth service,
each with two workers and its own PROMETHEUS_MULTIPROC_DIR, share PostgreSQL and Redis. Each /metrics reports the
pod's own counts, summed over its workers, so Prometheus summing the pods counts every login once (the Redis hash
this replaced made every pod report the fleet's total). A restarted pod starts from zero."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import pytest
import requests
from e2e_support import AUTH_DIR, auth_env, start_auth_service
from kong_emulator.testing import free_port, wait_port
from prometheus_client.parser import text_string_to_metric_families

# Two service start-ups (and their migrations) in one module fixture: more than the suite's 120 s on a loaded machine.
pytestmark = pytest.mark.timeout(300)
REDIS_DB = 12
DATABASE = "storyverse_e2e_metrics"
ISSUER = "http://metrics.storyverse.test"


def _gunicorn(port: int, env: dict[str, str]) -> subprocess.Popen:
    argv = [sys.executable, "-m", "gunicorn", "-w", "2", "-k", "gthread", "--threads", "2"]
    argv += ["-b", f"127.0.0.1:{port}", "--chdir", str(AUTH_DIR), "wsgi:app"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_healthy(port, proc)
    return proc


def _wait_healthy(port: int, proc: subprocess.Popen, seconds: float = 90) -> None:
    """Listening is not serving on a loaded machine: wait for /healthz (from either worker)."""
    wait_port(port, seconds=seconds, proc=proc)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200:
                return
        except requests.RequestException:
            time.sleep(0.5)
    raise TimeoutError(f"auth service on {port} not healthy")


@pytest.fixture(scope="module")
def pods(tmp_path_factory):
    # gunicorn reads ./gunicorn.conf.py from its starting directory (the image's /app); name it here.
    base = auth_env(DATABASE, REDIS_DB, ISSUER, GUNICORN_CMD_ARGS=f"--config {AUTH_DIR / 'gunicorn.conf.py'}")
    base |= {"ARGON2_TIME_COST": "1", "ARGON2_MEMORY_COST": "8"}  # counting, not hashing, is under test
    dirs = [tmp_path_factory.mktemp(f"pod{i}") / "prometheus" for i in range(2)]
    ports = [free_port(), free_port()]
    first = start_auth_service(ports[0], base | {"PROMETHEUS_MULTIPROC_DIR": str(dirs[0])})  # creates the database
    procs = [first]
    try:
        _wait_healthy(ports[0], first)
        procs.append(_gunicorn(ports[1], base | {"PROMETHEUS_MULTIPROC_DIR": str(dirs[1])}))
        pod = [
            {"url": f"http://127.0.0.1:{p}", "port": p, "dir": d, "env": base} for p, d in zip(ports, dirs, strict=True)
        ]
        yield pod, procs
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(60)


def failures(url: str) -> float:
    text = requests.get(url + "/metrics", timeout=60).text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return samples.get(("sv_auth_logins_total", (("outcome", "failure"),)), 0.0)


def fail_logins(url: str, count: int) -> None:
    for _ in range(count):
        body = {"email": f"nobody-{uuid.uuid4().hex[:8]}@example.com", "password": "a wrong but long password"}
        assert requests.post(url + "/api/auth/login", json=body, timeout=60).status_code == 401


def test_each_pod_reports_its_own_logins_summed_over_its_workers(pods):
    (a, b), _ = pods
    fail_logins(a["url"], 5)
    fail_logins(b["url"], 3)
    # Every scrape, whichever worker answers it, gives the pod's total; the pods add up to the fleet's 8.
    assert {failures(a["url"]) for _ in range(6)} == {5.0}
    assert {failures(b["url"]) for _ in range(6)} == {3.0}
    assert len(list(a["dir"].glob("counter_*.db"))) >= 1  # samples live in the pod's multiprocess directory


def test_a_restarted_pod_starts_from_zero(pods):
    (a, _), procs = pods
    fail_logins(a["url"], 2)
    assert failures(a["url"]) > 0
    procs[0].terminate()
    procs[0].wait(60)
    procs[0] = _gunicorn(a["port"], a["env"] | {"PROMETHEUS_MULTIPROC_DIR": str(a["dir"])})
    assert failures(a["url"]) == 0.0
    fail_logins(a["url"], 1)
    assert failures(a["url"]) == 1.0


def process_samples(text: str) -> dict[str, set[str]]:
    """role → pids of the pod's process_cpu_seconds_total samples."""
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "process_cpu_seconds_total":
                out.setdefault(s.labels["role"], set()).add(s.labels["pid"])
    return out


def test_process_metrics_cover_the_master_and_every_worker(pods):
    pod, procs = pods
    text = requests.get(pod[1]["url"] + "/metrics", timeout=60).text
    roles = process_samples(text)
    assert roles["master"] == {str(procs[1].pid)}  # `python -m gunicorn` is the master
    assert len(roles["worker"]) == 2 and str(procs[1].pid) not in roles["worker"]
    assert "process_resident_memory_bytes" in text and "process_open_fds" in text
