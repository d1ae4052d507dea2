"""End-to-end fixtures: the real sample backend and the real emulator process with real plugin servers.

Every emulator runs in Kong's real mode (`e2e_support.KongGateway`: a plugin-server failure is logged and the request
goes on, as in Kong 3.9.1; strict mode is for the protocol tests in tests/emulator). A test during which a plugin
failed (sv-edge's guard had to stop a request, or Kong answered 500 for a Lua error) fails at teardown even if the
HTTP answer looked right.
"""

from __future__ import annotations

import pytest
from e2e_support import KongGateway
from kong_emulator.testing import PluginEntry, free_port, wait_port
from sample_backend.testing import running


@pytest.fixture(scope="session")
def backend():
    """The sample backend (stand-in services); `backend["stories"]` is its base URL."""
    with running("stories", "characters", "universes", "generation") as urls:
        yield urls


@pytest.fixture
def gateway():
    """Factory: `gw = gateway(kong_yml_text, [repo_plugin("sv-request-id")])` → a started KongGateway."""
    started: list[KongGateway] = []

    def start(kong_yml: str, plugins: list[PluginEntry] = (), **kwargs) -> KongGateway:
        gw = KongGateway(kong_yml, list(plugins), **kwargs)
        started.append(gw)
        return gw.start()

    yield start
    failures = [line for gw in started for line in gw.strict_failures()]
    for gw in started:
        gw.stop()
    assert not failures, "plugin failures (Kong mode):\n" + "\n".join(failures)


@pytest.fixture(scope="session")
def auth_service():
    """The real auth service under gunicorn, on its own database (storyverse_e2e) and Redis db 5.

    Yields {"url": ..., "issuer": ..., "jwks_url": ..., "redis_db": 5}. Tokens it issues carry `iss` = issuer.
    """
    import redis
    import requests
    from e2e_support import auth_env, start_auth_service

    port = free_port()
    issuer = "http://storyverse.test"
    env = auth_env("storyverse_e2e", 5, issuer)
    redis.Redis(db=5).flushdb()
    proc = start_auth_service(port, env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_port(port, seconds=60, proc=proc)
        _wait_healthy(requests, url + "/healthz", proc)
        yield {"url": url, "issuer": issuer, "jwks_url": url + "/.well-known/jwks.json", "redis_db": 5}
    finally:
        proc.terminate()
        proc.wait(10)


def _wait_healthy(requests, url: str, proc, seconds: float = 60.0) -> None:
    """A fresh gunicorn on a loaded machine may take seconds to answer: retry until healthy or the deadline."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"auth service exited with {proc.returncode}")
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"auth service not healthy at {url} after {seconds}s")
