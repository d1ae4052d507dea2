"""One JSON line per request with the request id and, for an authenticated call, the user id; never the token."""

from __future__ import annotations

import json


def test_one_line_per_request_with_request_and_user_id(client, auth, access_lines):
    tokens = auth.tokens()
    before = len(access_lines())
    me = client.get("/api/auth/me", headers={**auth.bearer(tokens), "X-Request-Id": "req-123"})
    assert me.status_code == 200
    lines = access_lines()[before:]
    assert len(lines) == 1
    [line] = lines
    assert line["request_id"] == "req-123" and line["path"] == "/api/auth/me" and line["status"] == 200
    assert line["user_id"] == me.get_json()["id"]
    assert tokens["access_token"] not in json.dumps(access_lines())


def test_anonymous_and_refused_requests_carry_no_user_id(client, access_lines):
    client.get("/api/auth/me", headers={"Authorization": "Bearer not-a-token"})
    [line] = access_lines()
    assert line["status"] == 401 and "user_id" not in line
    assert "not-a-token" not in json.dumps(line)
