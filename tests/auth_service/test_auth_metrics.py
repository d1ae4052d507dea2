"""Prometheus metrics: logins by outcome, tokens issued, failed attempts by reason, refresh reuse."""

import re


def _value(text: str, sample: str) -> float:
    match = re.search(rf"^{re.escape(sample)} ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_metrics_count_the_seed_table(client, auth, clock):
    tokens = auth.tokens()
    auth.login(password="wrong password but long")
    client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    clock.advance(31)
    client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})  # reuse
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    assert "# TYPE sv_auth_logins_total counter" in text
    assert _value(text, 'sv_auth_logins_total{outcome="success"}') == 1
    assert _value(text, 'sv_auth_logins_total{outcome="failure"}') == 1
    assert _value(text, 'sv_auth_tokens_issued_total{kind="access"}') == 2
    assert _value(text, 'sv_auth_tokens_issued_total{kind="refresh"}') == 2
    assert _value(text, 'sv_auth_failed_attempts_total{reason="bad_credentials"}') == 1
    assert _value(text, "sv_auth_refresh_reuse_total") == 1


def test_invalid_tokens_are_counted_by_reason(client):
    client.get("/api/auth/me", headers={"Authorization": "Bearer nope"})
    client.get("/api/auth/sessions", headers={"Authorization": "Bearer also.not.valid"})
    client.get("/api/auth/me")  # no credentials at all is not an attempt
    text = client.get("/metrics").get_data(as_text=True)
    assert _value(text, 'sv_auth_failed_attempts_total{reason="invalid_token"}') == 2


def test_a_method_token_of_the_clients_choosing_is_counted_as_other(client):
    """A client chooses the method token: each new one used to be a new series (counter and histogram buckets, in
    every worker's files), an unauthenticated way to grow the service's memory and the scrape without bound."""
    for method in ("QWERTYUIOP", "ASDFGHJKL", "ZXCVBNM"):
        assert client.open("/api/auth/refresh", method=method).status_code == 405
    text = client.get("/metrics").get_data(as_text=True)
    assert "QWERTYUIOP" not in text and "ZXCVBNM" not in text
    assert _value(text, 'sv_auth_requests_total{endpoint="unmatched",method="other",status="405"}') == 3
