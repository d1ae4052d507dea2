"""schemathesis over the gateway's public OpenAPI document (issue 15): every operation, positive and negative.

The document is the one the gateway serves (`/api/v1/openapi.json`, docs/openapi/storyverse.json); the stack is the
repository's kong.yml rendered for this module's ports with one test setting passed to the generator,
`limit_scale` (every rate limit, daily quota and abuse threshold × 50), so no limit answers instead of the
service; kong.yml itself is not edited. The Kong emulator runs every plugin server (strict mode) in front of the real
auth service (gunicorn, PostgreSQL, Redis; its own login throttles raised by its settings) and the sample backend.

Every case is sent with a parent's access token, refreshed before it expires (and a fresh session for the cases
that can end one: logout, session revoke, password change). The run must show 0 server errors (5xx), 0 responses
that violate the document's schemas and 0 undocumented status codes. Bounded by `MAX_EXAMPLES` per operation and
mode so the module runs in a few minutes on the shared machine.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter

import jwt
import psycopg2
import pytest
import redis
import requests
import schemathesis
from e2e_support import (
    KongGateway,
    auth_env,
    rate_limiting_env,
    repo_plugins,
    start_auth_service,
    start_rate_limiting_service,
)
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from kong_emulator.testing import free_port, wait_port
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance
from schemathesis.core.failures import FailureGroup

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

MAX_EXAMPLES = 8
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]
LIMIT_SCALE = 50
REDIS_DB = 12
DATABASE = "storyverse_e2e_schemathesis"
ISSUER = "http://schemathesis.storyverse.test"
PASSWORD = "a long and quiet bedtime password"
OWN_IP, FUZZ_IP = "198.51.100.90", "203.0.113.90"
ENDS_A_SESSION = ("/auth/logout", "/auth/sessions/", "/auth/password/change")


def _render_kong_yml(auth_url: str, backends: dict[str, str], rate_limiting_url: str) -> str:
    import storyverse_gateway_config as gateway_config

    settings_ = gateway_config.load_settings(
        overrides={
            "services": {"auth": auth_url, "rate-limiting": rate_limiting_url, **backends},
            "jwt": {"jwks_url": auth_url + "/.well-known/jwks.json", "issuer": ISSUER, "audience": "storyverse-api"},
            "redis": {"redis_host": "127.0.0.1", "redis_port": 6379, "redis_database": REDIS_DB},
            "limit_scale": LIMIT_SCALE,
        }
    )
    return gateway_config.render(settings_)


@pytest.fixture(scope="module")
def gw(backend):
    redis.Redis(db=REDIS_DB).flushdb()
    port, rls_port = free_port(), free_port()
    auth_url, rls_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{rls_port}"
    env = auth_env(
        DATABASE,
        REDIS_DB,
        ISSUER,
        THROTTLE_IP_THRESHOLD="1000000",
        THROTTLE_ACCOUNT_IP_THRESHOLD="1000000",
        BILLING_WEBHOOK_SECRETS="whsec-gateway-schemathesis",
    )  # an unconfigured webhook is a 503 by design
    gateway = KongGateway(_render_kong_yml(auth_url, backend, rls_url), repo_plugins())
    gateway.conf_extra = {"trusted_ips": "127.0.0.1"}
    auth = start_auth_service(port, env)
    rls = None
    try:
        wait_port(port, seconds=60, proc=auth)
        rls = start_rate_limiting_service(rls_port, rate_limiting_env(env, auth_url))
        wait_port(rls_port, seconds=60, proc=rls)
        gateway.start()
        yield gateway
    finally:
        failures = gateway.strict_failures()
        gateway.stop()
        for proc in (rls, auth):
            if proc is not None:
                proc.terminate()
                proc.wait(10)
    assert not failures, "\n".join(failures)


class Parent:
    """A premium parent's session through the gateway: `bearer()` is a token valid for the next case."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.email = f"fuzz-{uuid.uuid4().hex[:8]}@example.com"
        body = {"email": self.email, "password": PASSWORD, "display_name": "Fuzz", "time_zone": "Europe/London"}
        assert self._post("/api/v1/auth/register", body).status_code == 202
        conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname=DATABASE)
        with conn, conn.cursor() as cur:
            cur.execute("UPDATE families SET tier = 'premium' WHERE id = "
                        "(SELECT family_id FROM accounts WHERE email = %s)", (self.email,))  # fmt: skip
        conn.close()
        self.access, self.refresh, self.exp, self.logins, self.refreshes = "", "", 0.0, 0, 0
        self.login()

    def _post(self, path: str, body: dict) -> requests.Response:
        return requests.post(self.url + path, json=body, headers={"X-Real-IP": OWN_IP}, timeout=30)

    def _take(self, resp: requests.Response) -> None:
        assert resp.status_code == 200, resp.text
        body = resp.json()
        self.access, self.refresh = body["access_token"], body["refresh_token"]
        self.exp = jwt.decode(self.access, options={"verify_signature": False})["exp"]

    def login(self) -> str:
        self.logins += 1
        self._take(self._post("/api/v1/auth/login", {"email": self.email, "password": PASSWORD}))
        return self.access

    def throwaway(self) -> str:
        """A session of its own for a case that may end sessions; the main one is renewed after it (`login`)."""
        self.logins += 1
        resp = self._post("/api/v1/auth/login", {"email": self.email, "password": PASSWORD})
        assert resp.status_code == 200, resp.text
        return resp.json()["access_token"]

    def bearer(self) -> str:
        if self.exp - time.time() < 30:
            resp = self._post("/api/v1/auth/refresh", {"refresh_token": self.refresh})
            if resp.status_code != 200:  # the session ended (a fuzzed logout): sign in again
                return self.login()
            self.refreshes += 1
            self._take(resp)
        return self.access


def _fuzz(url: str, operation, mode: GenerationMode, parent: Parent, failures: list[str], seen: Counter) -> None:
    own_session = operation.path.startswith(tuple(f"/api/v1{p}" for p in ENDS_A_SESSION))
    security = operation.definition.raw.get("security", [{"bearerAuth": []}])  # the document's default
    bearer = any("bearerAuth" in s for s in security)

    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case) -> None:
        headers = {"X-Real-IP": FUZZ_IP}
        if bearer:  # the parent's real token, never a generated one; other schemes keep what was generated
            headers["Authorization"] = f"Bearer {parent.throwaway() if own_session else parent.bearer()}"
        response = case.call(base_url=url, headers=headers, allow_redirects=False, timeout=30)
        if own_session:  # a global logout or a session revoke may have ended the main session too
            parent.login()
        seen[(mode.value, operation.label, response.status_code)] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except (AssertionError, FailureGroup) as exc:
            failures.append(f"{operation.label}: {exc}"[:1500])

    try:
        run()
    except Unsatisfiable:  # nothing to break (no parameters, no body): no negative case exists
        assert mode is GenerationMode.NEGATIVE


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
def test_the_gateway_conforms_to_its_public_openapi_document(gw, mode):
    schema = schemathesis.openapi.from_url(gw.url + "/api/v1/openapi.json")
    parent = Parent(gw.url)
    failures: list[str] = []
    seen: Counter = Counter()
    operations = 0
    for result in schema.get_all_operations():
        operations += 1
        _fuzz(gw.url, result.ok(), mode, parent, failures, seen)
    statuses = Counter(status for (_, _, status) in seen.elements())
    print(f"\n{operations} operations, {sum(seen.values())} requests, by status {dict(sorted(statuses.items()))}; "
          f"logins {parent.logins}, refreshes {parent.refreshes}")  # fmt: skip
    print("401s by operation:", sorted((label, n) for (_, label, status), n in seen.items() if status == 401))
    assert operations >= 50  # every operation of the document (43 paths)
    assert sum(seen.values()) >= operations * 2  # the run really exercised the gateway
    assert not failures, f"{len(failures)} failures:\n\n" + "\n\n".join(failures)
