"""prometheus_client metrics in one process: request counts and latency histograms by endpoint, the seed's
authentication counters, process metrics; each driven through the app and read back from /metrics.
(Per-pod counting across gunicorn workers: tests/e2e/test_auth_metrics_pods.py.)"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def scrape(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for s in family.samples
    }


def test_latency_histogram_and_request_counter_by_endpoint(client, auth):
    auth.register()
    for _ in range(3):
        auth.login(password="a wrong but long password")
    client.get("/no/such/thing")
    got = scrape(client)
    login = (("endpoint", "/api/auth/login"), ("method", "POST"))
    assert got["sv_auth_request_duration_seconds_count", login] == 3
    assert got["sv_auth_request_duration_seconds_bucket", tuple(sorted((*login, ("le", "+Inf"))))] == 3
    assert got["sv_auth_request_duration_seconds_sum", login] > 0
    assert got["sv_auth_requests_total", (("endpoint", "/api/auth/login"), ("method", "POST"), ("status", "401"))] == 3
    assert got["sv_auth_requests_total", (("endpoint", "unmatched"), ("method", "GET"), ("status", "404"))] == 1


def test_login_rate_token_issuance_and_failed_attempts(client, auth):
    tokens = auth.tokens()
    auth.login(password="a wrong but long password")
    client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    got = scrape(client)
    assert got["sv_auth_logins_total", (("outcome", "success"),)] == 1
    assert got["sv_auth_logins_total", (("outcome", "failure"),)] == 1
    assert got["sv_auth_tokens_issued_total", (("kind", "access"),)] == 2
    assert got["sv_auth_tokens_issued_total", (("kind", "refresh"),)] == 2
    assert got["sv_auth_failed_attempts_total", (("reason", "bad_credentials"),)] == 1


def test_each_app_counts_for_itself(client, auth, app):
    """Counts live in the app's registry (not a shared Redis hash): a fresh app starts from zero."""
    auth.login(password="a wrong but long password")
    from storyverse_auth import create_app

    other = create_app({"TESTING": True, "TRUST_PROXY_HOPS": 0}).test_client()
    assert ("sv_auth_logins_total", (("outcome", "failure"),)) not in scrape(other)
    assert scrape(client)["sv_auth_logins_total", (("outcome", "failure"),)] == 1


def test_process_metrics_are_exported(client):
    got = scrape(client)
    assert got["process_resident_memory_bytes", ()] > 0
    assert ("process_cpu_seconds_total", ()) in got
