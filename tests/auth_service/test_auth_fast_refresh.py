"""auth/fast_refresh.py answers POST /api/auth/refresh below Flask's dispatch: every answer must be the one the
Flask path gives. Each scenario runs twice, REFRESH_FAST_PATH on and off, and the two are compared: status, headers,
body shape, the access log line, the request metrics and the audit rows."""

from __future__ import annotations

import json

import pytest
import redis
from sqlalchemy import func, select
from storyverse_auth import metrics
from storyverse_auth.auth import fast_refresh
from storyverse_auth.extensions import db
from storyverse_auth.models import SessionEvent
from werkzeug.middleware.proxy_fix import ProxyFix

VOLATILE = ("access_token", "refresh_token", "session_id", "request_id", "instance")


@pytest.fixture
def view_calls(monkeypatch) -> list:
    """What the Flask view found handed over by the fast path (None: it rotated itself), one entry per call."""
    calls: list = []
    real = fast_refresh.outcome

    def spy(environ):
        try:
            found = real(environ)
        except Exception as exc:
            calls.append(type(exc).__name__)
            raise
        calls.append(None if found is None else type(found).__name__)
        return found

    monkeypatch.setattr("storyverse_auth.auth.routes.fast_refresh.outcome", spy)
    return calls


def _shape(response) -> dict:
    """What must not depend on the path taken: status, headers (values except volatile ones), body keys and code."""
    body = response.get_json(silent=True)
    headers = {k: v for k, v in response.headers.items() if k not in ("Content-Length", "X-Request-Id")}
    fields = {k: ("…" if k in VOLATILE else v) for k, v in body.items()} if isinstance(body, dict) else body
    return {"status": response.status_code, "headers": headers, "body": fields}


def _requests_counted(app, status: str) -> float:
    with app.app_context():
        child = metrics._metrics().requests.labels("/api/auth/refresh", "POST", status)
        return child._value.get()


def _audit_rows(app, reason: str) -> int:
    with app.app_context():
        rows = select(func.count()).select_from(SessionEvent).where(SessionEvent.reason == reason)
        return db.session.scalar(rows)


def _both(app, run) -> tuple:
    """``run()`` with the fast path on, then off (fresh state each time), and what each returned."""
    app.config["REFRESH_FAST_PATH"] = True
    fast = run()
    app.config["REFRESH_FAST_PATH"] = False
    try:
        slow = run()
    finally:
        app.config["REFRESH_FAST_PATH"] = True
    return fast, slow


def test_a_refresh_is_answered_below_flask_exactly_as_flask_answers_it(app, client, auth, access_lines, view_calls):
    def run():
        tokens = auth.tokens()
        before = len(access_lines())
        response = client.post(
            "/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}, headers={"X-Request-Id": "rq-1"}
        )
        [line] = access_lines()[before:]
        assert response.headers["X-Request-Id"] == "rq-1" and line["request_id"] == "rq-1"
        again = client.post("/api/auth/refresh", json={"refresh_token": response.get_json()["refresh_token"]})
        assert again.status_code == 200 and len(again.headers["X-Request-Id"]) == 32  # chosen when none was sent
        me = client.get("/api/auth/me", headers=auth.bearer(again.get_json()))
        assert me.status_code == 200  # the access token works
        line = {k: v for k, v in line.items() if k not in ("ts", "duration_ms")}
        return _shape(response), line, list(view_calls)

    counted = _requests_counted(app, "200")
    fast, slow = _both(app, run)
    assert fast[:2] == slow[:2]
    assert fast[0]["status"] == 200 and fast[0]["headers"]["Cache-Control"] == "no-store"
    assert fast[2] == [] and slow[2] == [None, None]  # the fast path answered both refreshes; Flask rotated itself
    assert _requests_counted(app, "200") == counted + 4


def test_a_reused_token_is_rendered_by_flask_from_the_fast_paths_outcome(app, client, auth, clock, view_calls):
    def run():
        view_calls.clear()
        tokens = auth.tokens()
        first = client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        clock.advance(31)  # past the grace window: the old token is a reuse
        reuse = client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        after = client.post("/api/auth/refresh", json={"refresh_token": first.get_json()["refresh_token"]})
        return _shape(reuse), _shape(after), list(view_calls)

    reuses = _audit_rows(app, "refresh_reuse")
    fast, slow = _both(app, run)
    assert fast[:2] == slow[:2]
    assert fast[0]["status"] == 401 and fast[0]["body"]["code"] == "refresh_token_reused"
    assert fast[1]["status"] == 401  # the reuse ended the session
    assert fast[2] == ["Rotation", "Rotation"] and slow[2] == [None, None, None]
    assert _audit_rows(app, "refresh_reuse") == reuses + 2  # the fast path's audit row was written too


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        ('{"refresh_token": "svrt_nope"}', {}),
        ('{"refresh_token": ""}', {}),
        ('{"refresh_token": "svrt_x", "extra": 1}', {}),
        ('{"refresh_token": "\\u0073vrt_x"}', {}),
        ('{"refresh_token": 7}', {}),
        ('["refresh_token"]', {}),
        ("{not json", {}),
        ('{"refresh_token": "svrt_x"}', {"Content-Type": "text/plain"}),
        ('{"refresh_token": "svrt_x"}', {"X-Forwarded-For": "not-an-ip"}),
        ('{"refresh_token": "svrt_x"}', {"Authorization": "Bearer a.b.c"}),
    ],
    ids=["unknown", "empty", "extra-key", "escaped", "number", "array", "malformed", "text", "forged-xff", "bearer"],
)
def test_every_other_request_gets_the_flask_answer(app, client, body, headers):
    def run():
        sent = {"Content-Type": "application/json", **headers}
        return _shape(client.post("/api/auth/refresh", data=body, headers=sent))

    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)  # as behind Kong: the fast path sees the forwarded address
    fast, slow = _both(app, run)
    assert fast == slow and fast["status"] >= 400


def test_a_query_string_or_a_large_body_goes_to_flask(app, client, auth, view_calls):
    tokens = auth.tokens()
    response = client.post("/api/auth/refresh?x=1", json={"refresh_token": tokens["refresh_token"]})
    padded = json.dumps({"refresh_token": response.get_json()["refresh_token"]}) + " " * fast_refresh.MAX_BODY
    assert client.post("/api/auth/refresh", data=padded, content_type="application/json").status_code == 200
    assert view_calls == [None, None]  # both rotated by the Flask view


def test_a_backing_service_down_is_the_same_503_problem(app, client, auth):
    def down(token):
        raise redis.ConnectionError("connection refused")

    def run():
        tokens = auth.tokens()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("storyverse_auth.sessions.service.rotate", down)  # the fast path's and the view's
            return _shape(client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}))

    fast, slow = _both(app, run)
    assert fast == slow and fast["status"] == 503
