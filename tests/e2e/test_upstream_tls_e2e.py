"""TLS on every hop behind Kong, as `make run` wires it (scripts/run_stack.py).

The auth service (gunicorn), the rate limiting service (gunicorn) and the sample backend serve HTTPS only, with
certificates from the local CA; kong.yml (the renderer's `upstream_tls.ca_certificate_file`) has https services with
`tls_verify` and that CA. A parent signs up and reaches the stories service through the gateway; a backend whose
certificate comes from another CA is refused with Kong's 502, and the plain-HTTP port of a TLS service does not
answer HTTP.

Which part of the emulator verifies: kong.yml carries Kong's `tls_verify`/`ca_certificates`; the emulator process also
gets SSL_CERT_FILE = the local CA (the plugin servers fetch the JWKS over https with Python's default trust store).
"""

from __future__ import annotations

import time
import uuid

import pytest
import redis
import requests
import yaml
from e2e_support import (
    KongGateway,
    auth_env,
    local_tls,
    rate_limiting_env,
    render_kong_yml,
    repo_plugins,
    start_auth_service,
    start_rate_limiting_service,
)
from kong_emulator.listeners.tls import issue_cert, local_ca
from kong_emulator.testing import free_port, wait_port
from sample_backend.testing import running

DATABASE, REDIS_DB, ISSUER = "storyverse_e2e_upstream_tls", 12, "http://storyverse.test"
PASSWORD = "upstream tls correct horse battery"


def _wait_healthy(url: str, ca: str, proc, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{url} exited with {proc.returncode}"
        try:
            if requests.get(url, timeout=5, verify=ca).status_code == 200:
                return
        except requests.RequestException:
            time.sleep(0.3)
    raise TimeoutError(url)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    ca, certs = local_tls(tmp_path_factory.mktemp("tls"), "auth", "rate-limiting", "backend")
    rogue = issue_cert(local_ca(tmp_path_factory.mktemp("other-ca")), "rogue")  # same names, another CA
    redis.Redis(db=REDIS_DB).flushdb()
    auth_port, rls_port = free_port(), free_port()
    auth_url, rls_url = f"https://127.0.0.1:{auth_port}", f"https://127.0.0.1:{rls_port}"
    env = auth_env(DATABASE, REDIS_DB, ISSUER)
    auth = start_auth_service(auth_port, env, tls=certs["auth"])
    rls_env = rate_limiting_env(env, auth_url) | {"SSL_CERT_FILE": str(ca)}
    rls = None
    with (
        running("stories", "characters", "generation", tls=certs["backend"]) as good,
        running("universes", tls=rogue) as bad,
    ):
        try:
            _wait_healthy(auth_url + "/healthz", str(ca), auth)
            rls = start_rate_limiting_service(rls_port, rls_env, tls=certs["rate-limiting"])
            wait_port(rls_port, seconds=60, proc=rls)
            kong_yml = render_kong_yml(auth_url, {**good, **bad}, ISSUER, REDIS_DB, rls_url, upstream_ca=str(ca))
            gw = KongGateway(kong_yml, repo_plugins(), env={"SSL_CERT_FILE": str(ca)}).start()
            try:
                yield {
                    "gw": gw,
                    "kong_yml": kong_yml,
                    "ca": str(ca),
                    "auth_port": auth_port,
                    "rls_url": rls_url,
                    "rls_pid": rls.pid,
                }
            finally:
                failures = gw.strict_failures()
                gw.stop()
                assert not failures, failures
        finally:
            for proc in (auth, rls):
                if proc is not None:
                    proc.terminate()
                    proc.wait(15)


def test_kong_yml_verifies_every_https_service_against_the_local_ca(stack):
    config = yaml.safe_load(stack["kong_yml"])
    (ca_entity,) = config["ca_certificates"]
    assert ca_entity["cert"] == open(stack["ca"]).read()
    for svc in config["services"]:
        assert svc["url"].startswith("https://"), svc["name"]
        assert svc["tls_verify"] is True and svc["ca_certificates"] == [ca_entity["id"]], svc["name"]


def test_a_parent_reaches_auth_and_stories_over_tls(stack):
    url = stack["gw"].url
    email = f"tls-{uuid.uuid4().hex[:12]}@example.com"
    body = {"email": email, "password": PASSWORD, "display_name": "TLS Parent", "time_zone": "Europe/Paris"}
    assert requests.post(url + "/api/v1/auth/register", json=body, timeout=20).status_code == 202
    login = requests.post(url + "/api/v1/auth/login", json={"email": email, "password": PASSWORD}, timeout=20)
    assert login.status_code == 200, login.text
    auth = {"Authorization": f"Bearer {login.json()['access_token']}"}  # sv-jwt fetched the JWKS over https
    created = requests.post(url + "/api/v1/stories", json={"title": "Over TLS"}, headers=auth, timeout=20)
    assert created.status_code == 201, created.text
    echoed = requests.get(url + "/api/v1/stories", headers=auth, timeout=20)
    assert echoed.status_code == 200, echoed.text
    # the rate limiting service over TLS, which checks the token against the auth service's JWKS over https
    usage = requests.get(url + "/api/v1/auth/usage", headers=auth, timeout=20)
    assert usage.status_code == 200, usage.text


def test_a_backend_with_a_certificate_from_another_ca_is_refused_with_502(stack):
    url = stack["gw"].url
    email = f"tls-rogue-{uuid.uuid4().hex[:12]}@example.com"
    body = {"email": email, "password": PASSWORD, "display_name": "TLS Parent", "time_zone": "Europe/Paris"}
    requests.post(url + "/api/v1/auth/register", json=body, timeout=20)
    token = requests.post(url + "/api/v1/auth/login", json={"email": email, "password": PASSWORD}, timeout=20)
    auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
    resp = requests.get(url + "/api/v1/universes", headers=auth, timeout=20)
    assert resp.status_code == 502, resp.text
    assert resp.headers["Content-Type"].startswith("application/problem+json")


def test_the_services_speak_tls_only(stack):
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{stack['auth_port']}/healthz", timeout=5)
    with pytest.raises(requests.exceptions.SSLError):  # not trusted without the local CA
        requests.get(stack["rls_url"] + "/healthz", timeout=5, verify=True)


def test_the_rate_limiting_service_reports_its_master_and_workers_processes(stack):
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(stack["rls_url"] + "/metrics", timeout=20, verify=stack["ca"]).text
    roles: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "process_resident_memory_bytes":
                roles.setdefault(s.labels["role"], set()).add(s.labels["pid"])
    assert roles["master"] == {str(stack["rls_pid"])}
    assert len(roles["worker"]) == 2  # gunicorn -w 2
