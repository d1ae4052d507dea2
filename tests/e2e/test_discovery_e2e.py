"""Service discovery through the whole layer (issue 16): kong.yml rendered with `discovery.enabled`, each service's
upstream targeting a local process (the real auth service, the sample backend), in the emulator with every plugin
server. Reads go through the `<name>-read` services (retries > 0), writes through the retries-0 ones; the access
log says which service and which balancer target answered."""

from __future__ import annotations

import json
import time
import uuid
from urllib.parse import urlsplit

import pytest
import requests
import storyverse_gateway_config as gateway_config
from e2e_support import KongGateway, repo_plugins
from kong_emulator.testing import free_port

pytestmark = pytest.mark.timeout(240)
PASSWORD = "discovery correct horse battery staple"


def _backend(url: str, health: str, retries: int) -> dict:
    parts = urlsplit(url)
    return {"host": parts.hostname, "port": parts.port, "healthPath": health, "idempotentRetries": retries,
            "scheme": "http"}  # fmt: skip


@pytest.fixture(scope="module")
def stack(auth_service, backend, tmp_path_factory):
    access_log = tmp_path_factory.mktemp("discovery") / "access.log"
    nowhere = f"http://127.0.0.1:{free_port()}"  # rate limiting: not started, not called here
    backends = {"auth": _backend(auth_service["url"], "/healthz", 2), "rate-limiting": _backend(nowhere, "/healthz", 2)}
    for name in ("stories", "characters", "universes", "generation"):
        backends[name] = _backend(backend[name], "/__echo", 0 if name == "generation" else 2)
    settings = gateway_config.load_settings(
        overrides={
            "discovery": {"enabled": True, "backends": backends},
            "jwt": {"jwks_url": auth_service["jwks_url"], "issuer": auth_service["issuer"]},
            "redis": {"redis_database": auth_service["redis_db"]},
            "access_log": str(access_log),
        }
    )
    text = gateway_config.render(settings)
    assert "upstreams:" in text and "stories-read" in text
    gw = KongGateway(text, repo_plugins()).start()
    gw.access_log = access_log
    try:
        yield gw
    finally:
        failures = gw.strict_failures()
        gw.stop()
        assert not failures, "\n".join(failures)


def _records(gw, request_ids: list[str], seconds: float = 10.0) -> dict[str, dict]:
    deadline = time.monotonic() + seconds
    while True:
        text = gw.access_log.read_text() if gw.access_log.exists() else ""
        by_id = {r.get("request_id"): r for r in map(json.loads, text.splitlines())}
        if all(rid in by_id for rid in request_ids) or time.monotonic() > deadline:
            return by_id
        time.sleep(0.1)


def test_reads_and_writes_reach_the_backends_through_their_upstreams(stack, backend):
    url = stack.url
    email = f"discovery-{uuid.uuid4().hex[:12]}@example.com"
    body = {"email": email, "password": PASSWORD, "display_name": "Disco Parent", "time_zone": "Europe/Paris"}
    assert requests.post(url + "/api/v1/auth/register", json=body, timeout=15).status_code == 202
    login = requests.post(url + "/api/v1/auth/login", json={"email": email, "password": PASSWORD}, timeout=15)
    assert login.status_code == 200, login.text
    auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
    created = requests.post(url + "/api/v1/stories", json={"title": "The found fox"}, headers=auth, timeout=15)
    assert created.status_code == 201, created.text
    listed = requests.get(url + "/api/v1/stories", headers=auth, timeout=15)
    assert listed.status_code == 200, listed.text
    me = requests.get(url + "/api/v1/auth/me", headers=auth, timeout=15)
    assert me.status_code == 200, me.text

    ids = {name: r.headers["X-Request-Id"] for name, r in
           (("login", login), ("create", created), ("list", listed), ("me", me))}  # fmt: skip
    records = _records(stack, list(ids.values()))
    services = {name: records[rid]["service"]["name"] for name, rid in ids.items()}
    assert services == {"login": "auth", "create": "stories", "list": "stories-read", "me": "auth-read"}
    stories_port = urlsplit(backend["stories"]).port
    for name in ("create", "list"):
        record = records[ids[name]]
        assert record["service"]["host"] == "stories.upstream"
        assert record["tries"][-1]["port"] == stories_port  # the balancer's target
