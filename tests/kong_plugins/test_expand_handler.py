"""sv-expand handler with FakeKong: round trips per path, the composed exit, no PDK call after exit, degradation."""

from __future__ import annotations

import json

import pytest
from storyverse_plugins import PRIORITIES
from storyverse_plugins.expand import handler
from storyverse_plugins.expand.core import Outcome
from storyverse_plugins.expand.handler import Plugin

CHARS_URL = "http://c/api/v1/characters"
UNIV_URL = "http://u/api/v1/universes"
CONFIG = {
    "expansions": [
        {"name": "characters", "id_field": "character_ids", "url": CHARS_URL},
        {"name": "universe", "id_field": "universe_id", "url": UNIV_URL},
    ],
    "envelope_field": "item",
}
STORY = {"service": "stories", "item": {"id": "5", "character_ids": ["1", "2"], "universe_id": "3"}}
RESOURCES = {
    f"{CHARS_URL}/1": Outcome(resource={"id": "1", "name": "Pip"}),
    f"{CHARS_URL}/2": Outcome(reason="not_found"),
    f"{UNIV_URL}/3": Outcome(resource={"id": "3", "name": "Dreamland"}),
}


class FakeFetcher:
    def __init__(self, results=RESOURCES, error=None):
        self.results, self.error, self.calls = results, error, []

    def fetch_all(self, urls, headers):
        self.calls.append((tuple(urls), headers))
        if self.error:
            raise self.error
        return {u: self.results[u] for u in urls if u in self.results}


def pdk(fake_kong, expand="characters,universe", status=200, headers=None, body=STORY):
    raw = body if isinstance(body, bytes | None) else json.dumps(body).encode()
    return fake_kong(
        {
            "kong.request.get_query_arg": expand,
            "kong.service.response.get_status": status,
            "kong.service.response.get_headers": headers or {"content-type": ["application/json"]},
            "kong.service.response.get_raw_body": raw,
            "kong.request.get_headers": {"x-user-id": ["u1"], "x-request-id": ["rid-1"], "authorization": ["t"]},
        }
    )


def methods(fk):
    return [name for name, _ in fk.calls]


def test_priority_and_phases():
    assert handler.priority == PRIORITIES.get("sv-expand", 810) == handler.PRIORITY
    assert PRIORITIES["sv-quota"] > handler.priority  # validated and composed after authn, authz and quota
    assert callable(Plugin.access) and callable(Plugin.response)


def test_without_expand_one_round_trip_per_phase(fake_kong):
    fetcher = FakeFetcher()
    plugin = Plugin(CONFIG, fetcher)
    for phase in ("access", "response"):
        fk = pdk(fake_kong, expand=None)
        getattr(plugin, phase)(fk.kong)
        assert methods(fk) == ["kong.request.get_query_arg"] and fk.exited is None
    assert fetcher.calls == []


def test_access_accepts_a_valid_expand_in_one_round_trip(fake_kong):
    fk = pdk(fake_kong)
    Plugin(CONFIG, FakeFetcher()).access(fk.kong)
    assert methods(fk) == ["kong.request.get_query_arg"] and fk.exited is None


def test_access_refuses_unknown_expansions_with_a_problem(fake_kong):
    fk = pdk(fake_kong, expand="characters,villains")
    fk.shared["sv_request_id"] = "rid-1"
    Plugin(CONFIG, FakeFetcher()).access(fk.kong)
    status, body, headers = fk.exited
    problem = json.loads(body)
    assert status == 400 and headers["Content-Type"] == "application/problem+json"
    assert problem["code"] == "invalid_expand" and problem["request_id"] == "rid-1"
    assert "characters,universe" in problem["detail"]
    assert methods(fk) == ["kong.request.get_query_arg", "kong.ctx.shared.get", "kong.response.exit"]


def test_response_composes_in_six_round_trips(fake_kong):
    fetcher = FakeFetcher()
    fk = pdk(fake_kong)
    Plugin(CONFIG, fetcher).response(fk.kong)
    assert methods(fk) == [
        "kong.request.get_query_arg",
        "kong.service.response.get_status",
        "kong.service.response.get_headers",
        "kong.service.response.get_raw_body",
        "kong.request.get_headers",
        "kong.response.exit",
    ]
    status, body, headers = fk.exited
    out = json.loads(body)
    assert status == 200 and out["service"] == "stories"
    item = out["item"]
    assert item["characters"] == [{"id": "1", "name": "Pip"}] and item["universe"]["name"] == "Dreamland"
    assert item["_expanded"] == {
        "characters": {"status": "partial", "errors": {"2": "not_found"}},
        "universe": {"status": "ok"},
    }
    assert headers == {"Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store"}
    ((urls, forwarded),) = fetcher.calls
    assert urls == (f"{CHARS_URL}/1", f"{CHARS_URL}/2", f"{UNIV_URL}/3")
    assert forwarded == {"X-User-Id": "u1", "X-Request-Id": "rid-1"}  # identity, never the token


def test_only_the_requested_expansions_are_fetched(fake_kong):
    fetcher = FakeFetcher()
    fk = pdk(fake_kong, expand="universe")
    Plugin(CONFIG, fetcher).response(fk.kong)
    item = json.loads(fk.exited[1])["item"]
    assert fetcher.calls[0][0] == (f"{UNIV_URL}/3",)
    assert "characters" not in item and item["_expanded"] == {"universe": {"status": "ok"}}
    assert "Cache-Control" not in fk.exited[2]


@pytest.mark.parametrize(
    "over, calls",
    [
        ({"status": 404}, 2),
        ({"status": 204}, 2),
        ({"headers": {"content-type": ["text/html"]}}, 3),
        ({"headers": {"content-type": ["application/json"], "content-encoding": ["gzip"]}}, 3),
        ({"body": b"not json"}, 4),
        ({"body": {"service": "stories"}}, 4),  # no record in the envelope
        ({"body": None}, 4),  # no buffered body (HTTP/2 client: Kong turns buffering off)
        ({"expand": "villains"}, 1),  # access refused it; should it get here, nothing is expanded
    ],
)
def test_answers_that_are_not_composed_go_out_untouched(fake_kong, over, calls):
    fetcher = FakeFetcher()
    fk = pdk(fake_kong, **over)
    Plugin(CONFIG, fetcher).response(fk.kong)
    assert fk.exited is None and len(fk.calls) == calls and fetcher.calls == []


def test_a_story_without_references_needs_no_identity_read(fake_kong):
    fetcher = FakeFetcher()
    fk = pdk(fake_kong, body={"item": {"id": "5"}})
    Plugin(CONFIG, fetcher).response(fk.kong)
    assert "kong.request.get_headers" not in methods(fk) and len(fk.calls) == 5
    item = json.loads(fk.exited[1])["item"]
    assert item["characters"] is None and item["_expanded"]["characters"] == {"status": "ok"}


def test_an_internal_error_degrades_to_the_unexpanded_story(fake_kong, caplog):
    fk = pdk(fake_kong)
    Plugin(CONFIG, FakeFetcher(error=RuntimeError("pool exploded"))).response(fk.kong)
    assert fk.exited is None  # Kong sends the buffered story as the service sent it
    assert "composition failed" in caplog.text


def test_a_pdk_error_in_access_lets_the_request_go_on(fake_kong, caplog):
    def broken(name):
        raise ConnectionError("socket closed")

    fk = fake_kong({"kong.request.get_query_arg": broken})
    Plugin(CONFIG, FakeFetcher()).access(fk.kong)
    assert fk.exited is None and "validation failed" in caplog.text


def test_a_bad_config_fails_at_instance_start():
    with pytest.raises(ValueError, match="absolute"):
        Plugin({"expansions": [{"name": "x", "id_field": "x_id", "url": "file:///etc/passwd"}]})
