"""sv-expand pure core: the expand argument, what to fetch, reading answers, composition and partial failures."""

import json

import pytest
from storyverse_plugins.expand import core
from storyverse_plugins.expand.core import Outcome
from storyverse_plugins.expand.schema import parse_config

CHARS_URL = "http://c/api/v1/characters"
UNIV_URL = "http://u/api/v1/universes"


def config(**over):
    raw = {
        "expansions": [
            {"name": "characters", "id_field": "character_ids", "url": CHARS_URL},
            {"name": "universe", "id_field": "universe_id", "url": UNIV_URL},
        ],
        "max_ids": 3,
    }
    raw.update(over)
    return parse_config(raw)


CFG = config()
STORY = {"id": "5", "title": "The Sleepy Dragon", "character_ids": ["1", "2"], "universe_id": "3"}


# -- the expand argument ---------------------------------------------------------------------------------------


def test_requested_names_in_order_without_duplicates_or_blanks():
    assert core.requested(None, CFG) == ()
    assert core.requested("characters,universe", CFG) == ("characters", "universe")
    assert core.requested(" universe , characters,universe,", CFG) == ("universe", "characters")


@pytest.mark.parametrize("value", [True, "", "  ", ",", "characters,villains", "../etc", "x" * 300])
def test_bad_expand_values_are_client_errors(value):
    with pytest.raises(core.BadExpand):
        core.requested(value, CFG)


def test_unknown_expansion_error_names_the_allowed_ones():
    with pytest.raises(core.BadExpand, match="characters,universe"):
        core.requested("villains", CFG)


# -- ids and the plan ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [("12", "12"), (12, "12"), ("a-B_3", "a-B_3"), (0, "0")])
def test_valid_ids(value, expected):
    assert core.valid_id(value) == expected


@pytest.mark.parametrize(
    "value", [True, False, -1, 1.5, None, "", "../admin", "1/2", "%2e%2e", "a.b", "1?x=2", "x" * 65, {"id": 1}, [1]]
)
def test_ids_that_could_leave_the_resource_are_refused(value):
    assert core.valid_id(value) is None


def test_plan_list_and_single_references():
    chars, univ = core.plan(STORY, ("characters", "universe"), CFG)
    assert (chars.many, chars.ids, chars.rejected) == (True, ("1", "2"), ())
    assert (univ.many, univ.ids) == (False, ("3",))
    assert core.fetch_list((chars, univ)) == (f"{CHARS_URL}/1", f"{CHARS_URL}/2", f"{UNIV_URL}/3")


def test_plan_dedupes_rejects_invalid_and_caps_ids():
    story = {"character_ids": ["1", "1", "../x", 2, "3", "4", "5"]}
    (part,) = core.plan(story, ("characters",), CFG)
    assert part.ids == ("1", "2", "3")
    assert dict(part.rejected) == {"../x": "invalid_id", "4": "over_limit", "5": "over_limit"}


def test_plan_without_references():
    chars, univ = core.plan({"id": "5"}, ("characters", "universe"), CFG)
    assert chars.ids == univ.ids == () and not chars.many
    assert core.fetch_list((chars, univ)) == ()


# -- reading answers -------------------------------------------------------------------------------------------


def test_read_answer():
    cfg = config(envelope_field="item")
    ok = core.read_answer(200, b'{"item": {"id": "1", "name": "Pip"}, "service": "characters"}', cfg)
    assert ok == Outcome(resource={"id": "1", "name": "Pip"})
    assert core.read_answer(200, b'{"id": "1"}', cfg).reason == "error"  # no envelope
    assert core.read_answer(200, b"<html>", cfg).reason == "error"
    assert core.read_answer(200, b"[1, 2]", CFG).reason == "error"
    assert core.read_answer(404, b"{}", cfg).reason == "not_found"
    assert core.read_answer(410, b"", cfg).reason == "not_found"
    assert core.read_answer(403, b"{}", cfg).reason == "forbidden"
    assert core.read_answer(503, b"{}", cfg).reason == "error"
    assert core.read_answer(302, b"", cfg).reason == "error"  # redirects are not followed


def test_parse_json_refuses_oversized_or_empty_bodies():
    assert core.parse_json(b'{"a": 1}', 100) == {"a": 1}
    assert core.parse_json('{"a": 1}', 100) == {"a": 1}
    assert core.parse_json(b'{"a": "' + b"x" * 200 + b'"}', 100) is None
    assert core.parse_json(b"", 100) is None
    assert core.parse_json(None, 100) is None


# -- composition -----------------------------------------------------------------------------------------------

PIP, BO, LAND = {"id": "1", "name": "Pip"}, {"id": "2", "name": "Bo"}, {"id": "3", "name": "Dreamland"}


def outcomes(**by_url):
    return {url: value for url, value in by_url.items()}


def test_compose_all_ok():
    parts = core.plan(STORY, ("characters", "universe"), CFG)
    got = {
        f"{CHARS_URL}/1": Outcome(resource=PIP),
        f"{CHARS_URL}/2": Outcome(resource=BO),
        f"{UNIV_URL}/3": Outcome(resource=LAND),
    }
    body, complete = core.compose(STORY, STORY, parts, got, CFG)
    assert complete
    assert body["characters"] == [PIP, BO] and body["universe"] == LAND
    assert body["_expanded"] == {"characters": {"status": "ok"}, "universe": {"status": "ok"}}
    assert body["character_ids"] == ["1", "2"] and "characters" not in STORY  # the input is not mutated


def test_compose_partial_failures_are_marked_not_fatal():
    parts = core.plan(STORY, ("characters", "universe"), CFG)
    got = {f"{CHARS_URL}/1": Outcome(resource=PIP), f"{CHARS_URL}/2": Outcome(reason="not_found")}
    body, complete = core.compose(STORY, STORY, parts, got, CFG)  # the universe never came back: timeout
    assert not complete
    assert body["characters"] == [PIP] and body["universe"] is None
    assert body["_expanded"] == {
        "characters": {"status": "partial", "errors": {"2": "not_found"}},
        "universe": {"status": "failed", "errors": {"3": "timeout"}},
    }


def test_compose_inside_an_envelope_keeps_the_rest_of_the_body():
    cfg = config(envelope_field="item")
    body = {"service": "stories", "item": STORY}
    parts = core.plan(STORY, ("universe",), cfg)
    out, complete = core.compose(body, STORY, parts, {f"{UNIV_URL}/3": Outcome(resource=LAND)}, cfg)
    assert complete and out["service"] == "stories"
    assert out["item"]["universe"] == LAND and out["item"]["_expanded"] == {"universe": {"status": "ok"}}
    assert "characters" not in out["item"]


def test_compose_reports_refused_references():
    story = {"character_ids": ["1", "../x"], "universe_id": None}
    parts = core.plan(story, ("characters", "universe"), CFG)
    body, complete = core.compose(story, story, parts, {f"{CHARS_URL}/1": Outcome(resource=PIP)}, CFG)
    assert not complete
    assert body["_expanded"]["characters"] == {"status": "partial", "errors": {"../x": "invalid_id"}}
    assert body["universe"] is None and body["_expanded"]["universe"] == {"status": "ok"}


def test_same_resource_referenced_twice_is_fetched_once():
    cfg = config(
        expansions=[
            {"name": "characters", "id_field": "character_ids", "url": CHARS_URL},
            {"name": "narrator", "id_field": "narrator_id", "url": CHARS_URL},
        ]
    )
    story = {"character_ids": ["1"], "narrator_id": "1"}
    parts = core.plan(story, ("characters", "narrator"), cfg)
    assert core.fetch_list(parts) == (f"{CHARS_URL}/1",)
    body, _ = core.compose(story, story, parts, {f"{CHARS_URL}/1": Outcome(resource=PIP)}, cfg)
    assert body["characters"] == [PIP] and body["narrator"] == PIP


# -- headers ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers, expected",
    [
        ({"content-type": "application/json"}, True),
        ({"content-type": ["application/json; charset=utf-8"]}, True),
        ({"content-type": "application/vnd.storyverse+json"}, True),
        ({"content-type": "application/json", "content-encoding": "identity"}, True),
        ({"content-type": "application/json", "content-encoding": "gzip"}, False),
        ({"content-type": "text/html"}, False),
        ({}, False),
        (None, False),
    ],
)
def test_composable(headers, expected):
    assert core.composable(headers) is expected


def test_success():
    assert core.success(200) and core.success(201)
    assert not any(core.success(s) for s in (204, 304, 404, 500, None, True, "200"))


def test_forwarded_takes_the_configured_headers_as_the_upstream_received_them():
    request = {"x-user-id": ["u1"], "x-request-id": "r1", "authorization": "Bearer t", "x-family-id": []}
    assert core.forwarded(request, ("X-User-Id", "X-Family-Id", "X-Request-Id")) == {
        "X-User-Id": "u1",
        "X-Request-Id": "r1",
    }
    assert core.forwarded(None, ("X-User-Id",)) == {}


def test_response_headers():
    data = json.dumps({"a": 1}).encode()
    assert core.response_headers({}, data, True) == {"Content-Type": "application/json; charset=utf-8"}
    degraded = core.response_headers({"etag": '"v1"'}, data, False)
    assert degraded["Cache-Control"] == "no-store"
    assert degraded["ETag"].startswith('W/"') and degraded["ETag"] != '"v1"'
    assert core.response_headers({"etag": '"v1"'}, data, True)["ETag"] == degraded["ETag"]
