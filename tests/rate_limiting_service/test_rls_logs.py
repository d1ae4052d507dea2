"""One JSON line per request (storyverse_ratelimit/logs.py): request id, user id, no query string, no token."""

from __future__ import annotations

import io
import json
import logging

import pytest
from storyverse_ratelimit.logs import JSONLines
from test_rls_api import family, parent_headers  # noqa: F401  (the family fixture)


@pytest.fixture
def lines(app):
    """The JSON lines the service's loggers write (its own formatter on a buffer)."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JSONLines())
    logger = logging.getLogger("storyverse_ratelimit")
    logger.addHandler(handler)
    yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    logger.removeHandler(handler)


def _requests(lines) -> list[dict]:
    return [x for x in lines() if x["logger"] == "storyverse_ratelimit.access"]


def test_each_request_is_one_json_line_with_request_and_user_id(client, signer, family, lines):  # noqa: F811
    headers = {**parent_headers(signer, family), "X-Request-Id": "req-123"}
    assert client.get("/api/auth/usage?days=2&access_token=secret", headers=headers).status_code == 200
    (line,) = _requests(lines)
    assert line["msg"] == "request" and line["request_id"] == "req-123" and line["status"] == 200
    assert line["path"] == "/api/auth/usage" and line["method"] == "GET" and line["duration_ms"] >= 0
    assert line["user_id"] == family["parent"]
    text = json.dumps(lines())
    assert "secret" not in text and headers["Authorization"].split()[1] not in text


def test_a_malformed_request_id_is_not_logged(client, lines):
    client.get("/healthz", headers={"X-Request-Id": "x" * 100 + "{"})
    (line,) = _requests(lines)
    assert line["request_id"] is None and line["status"] == 200 and "user_id" not in line
