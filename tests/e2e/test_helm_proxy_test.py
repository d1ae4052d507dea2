"""The chart's `helm test` proxy check, run for real: the script the chart renders into its test pod calls
/.well-known/jwks.json through the whole layer (the repository's kong.yml in the Kong emulator with every plugin
server, the real auth service), and fails when the answer is not a public JWKS."""

from __future__ import annotations

import subprocess
import sys

import pytest
import redis
import yaml
from e2e_support import REPO, KongGateway, auth_env, repo_plugins, start_auth_service
from kong_emulator.testing import free_port, wait_port

# Two service start-ups (and their migrations) in one module fixture: more than the suite's 120 s on a loaded machine.
pytestmark = pytest.mark.timeout(300)
REDIS_DB = 11
DATABASE = "storyverse_e2e_helmtest"
ISSUER = "http://helmtest.storyverse.test"
CHART = REPO / "helm" / "storyverse"


@pytest.fixture(scope="module")
def proxy_test_script() -> list[str]:
    """The proxy test pod's `python -c <script>` and its arguments, from a real `helm template`."""
    subprocess.run(["bash", str(REPO / "scripts" / "install-helm.sh")], check=True, timeout=300)
    helm, values = REPO / ".venv" / "bin" / "helm", CHART / "ci" / "default-values.yaml"
    out = subprocess.run(
        [str(helm), "template", "storyverse", str(CHART), "-f", str(values)],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    [pod] = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "Pod" and d["metadata"]["name"].endswith("proxy")]
    command = pod["spec"]["containers"][0]["command"]
    assert command[:2] == ["python", "-c"]
    assert command[3:] == ["storyverse-gateway", "443", "api.storyverse.example", "true"]  # HTTPS by default
    return command[2]


@pytest.fixture(scope="module")
def stack(backend):
    redis.Redis(db=REDIS_DB).flushdb()
    port = free_port()
    auth = start_auth_service(port, auth_env(DATABASE, REDIS_DB, ISSUER))
    auth_url = f"http://127.0.0.1:{port}"
    import storyverse_gateway_config as gateway_config

    settings = gateway_config.load_settings(
        overrides={
            "services": {"auth": auth_url, **backend},
            "jwt": {"jwks_url": auth_url + "/.well-known/jwks.json", "issuer": ISSUER},
            "redis": {"redis_database": REDIS_DB},
        }
    )
    gw = KongGateway(gateway_config.render(settings), repo_plugins())
    try:
        wait_port(port, seconds=60, proc=auth)
        gw.start()
        yield {"gateway": gw, "auth_port": port}
    finally:
        failures = gw.strict_failures()
        gw.stop()
        auth.terminate()
        auth.wait(10)
    assert not failures, "\n".join(failures)


def _run(script: str, port: int) -> subprocess.CompletedProcess[str]:
    # The emulator serves plain HTTP (TLS on the proxy is covered by the chart tests), so run it with tls=false.
    return subprocess.run(
        [sys.executable, "-c", script, "127.0.0.1", str(port), "api.storyverse.example", "false"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_the_helm_test_passes_through_the_gateway(proxy_test_script, stack):
    proc = _run(proxy_test_script, stack["gateway"].port)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    status, _, rest = proc.stdout.partition(" ")
    assert status == "200" and "request id: " in rest and "request id: None" not in rest


def test_the_helm_test_fails_where_no_jwks_is_served(proxy_test_script, stack):
    # The sample backend's health port is not the gateway: a non-JWKS answer (or none) must fail the test.
    proc = _run(proxy_test_script, free_port())
    assert proc.returncode != 0
