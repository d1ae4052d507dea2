"""sv-expand end to end: client → emulator (buffered `response` phase) → real plugin server → sample backend.

The sample backend keeps records per family (X-Family-Id, docs/backend-contract.md). Here no sv-jwt runs, so the
client's identity headers reach the story service as is; in production sv-jwt strips them and sets the verified
ones, and sv-expand forwards the same headers the story's upstream received. A universe that answers only after
2 s stands in for a slow service.
"""

from __future__ import annotations

import time

import pytest
import requests
from e2e_support import KongGateway, repo_plugin

USER = {"X-User-Id": "e2e-expand-parent", "X-User-Role": "parent", "X-Family-Id": "e2e-expand-family"}
SLOW_MS = 2000


def kong_yml(backend: dict[str, str]) -> str:
    characters = f"{backend['characters']}/api/v1/characters"
    universes = f"{backend['universes']}/api/v1/universes"
    slow = f"{backend['universes']}/__sleep?ms={SLOW_MS}&universe={{id}}"
    return f"""
_format_version: "3.0"
services:
  - name: stories
    url: {backend["stories"]}
    routes:
      - name: story-item
        paths: ["~/api/v1/stories/(?<story_id>[0-9]+)$"]
        methods: [GET]
        strip_path: false
        plugins:
          - name: sv-expand
            config:
              envelope_field: item
              budget_ms: 300
              timeout_ms: 250
              expansions:
                - {{name: characters, id_field: character_ids, url: "{characters}"}}
                - {{name: universe, id_field: universe_id, url: "{universes}"}}
      - name: story-item-slow-universe
        paths: ["/slow"]
        strip_path: true
        plugins:
          - name: sv-expand
            config:
              envelope_field: item
              budget_ms: 300
              timeout_ms: 250
              expansions:
                - {{name: characters, id_field: character_ids, url: "{characters}"}}
                - {{name: universe, id_field: universe_id, url: "{slow}"}}
plugins:
  - name: sv-request-id
"""


@pytest.fixture(scope="module")
def gw(backend):
    """One emulator for the module (strict mode: a plugin-side protocol error fails the module)."""
    proc = KongGateway(kong_yml(backend), [repo_plugin("sv-request-id"), repo_plugin("sv-expand")]).start()
    try:
        yield proc
        failures = proc.strict_failures()
        assert not failures, "plugin protocol failures in strict mode:\n" + "\n".join(failures)
    finally:
        proc.stop()


def create(base: str, collection: str, record: dict) -> str:
    resp = requests.post(f"{base}/api/v1/{collection}", json=record, headers=USER, timeout=5)
    assert resp.status_code == 201, resp.text
    return resp.json()["item"]["id"]


@pytest.fixture(scope="module")
def story(backend):
    """A universe, two characters and a story that references them plus one character that does not exist."""
    universe = create(backend["universes"], "universes", {"name": "Dreamland"})
    pip = create(backend["characters"], "characters", {"name": "Pip the Owl"})
    bo = create(backend["characters"], "characters", {"name": "Bo the Bear"})
    story_id = create(
        backend["stories"],
        "stories",
        {"title": "The Sleepy Dragon", "character_ids": [pip, bo, "999999"], "universe_id": universe},
    )
    return {"id": story_id, "universe": universe, "characters": [pip, bo]}


def test_story_is_composed_with_characters_and_universe(gw, story):
    resp = requests.get(f"{gw.url}/api/v1/stories/{story['id']}?expand=characters,universe", headers=USER, timeout=10)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("application/json")
    item = resp.json()["item"]
    assert item["title"] == "The Sleepy Dragon"
    assert [c["id"] for c in item["characters"]] == story["characters"]  # per-family records: identity forwarded
    assert [c["name"] for c in item["characters"]] == ["Pip the Owl", "Bo the Bear"]
    assert item["universe"] == {"id": story["universe"], "name": "Dreamland", "content_rating": "TV-Y",
                                "created_by": USER["X-User-Id"]}  # fmt: skip
    assert item["_expanded"] == {
        "characters": {"status": "partial", "errors": {"999999": "not_found"}},
        "universe": {"status": "ok"},
    }
    assert resp.headers["Cache-Control"] == "no-store"  # a degraded composition is never cached
    assert int(resp.headers["Content-Length"]) == len(resp.content)
    assert resp.headers["X-Request-Id"]


def test_a_slow_service_is_marked_timeout_within_the_budget(gw, story):
    start = time.monotonic()
    resp = requests.get(
        f"{gw.url}/slow/api/v1/stories/{story['id']}?expand=universe,characters", headers=USER, timeout=10
    )
    elapsed = time.monotonic() - start
    assert resp.status_code == 200
    item = resp.json()["item"]
    assert item["universe"] is None
    assert item["_expanded"]["universe"] == {"status": "failed", "errors": {story["universe"]: "timeout"}}
    assert [c["name"] for c in item["characters"]] == ["Pip the Owl", "Bo the Bear"]  # the rest still came back
    assert elapsed < SLOW_MS / 1000 / 2  # answered at the 300 ms budget, not after the 2 s service


def test_unknown_expansion_is_a_400_problem_before_the_upstream(gw, story):
    resp = requests.get(f"{gw.url}/api/v1/stories/{story['id']}?expand=characters,villains", headers=USER, timeout=10)
    assert resp.status_code == 400
    assert resp.headers["Content-Type"] == "application/problem+json"
    problem = resp.json()
    assert problem["code"] == "invalid_expand" and problem["request_id"] == resp.headers["X-Request-Id"]
    assert "characters,universe" in problem["detail"]


def test_without_expand_the_story_passes_through_unchanged(gw, story):
    resp = requests.get(f"{gw.url}/api/v1/stories/{story['id']}", headers=USER, timeout=10)
    assert resp.status_code == 200
    item = resp.json()["item"]
    assert "_expanded" not in item and "characters" not in item and item["universe_id"] == story["universe"]


def test_errors_from_the_story_service_are_not_expanded(gw):
    resp = requests.get(f"{gw.url}/api/v1/stories/424242?expand=characters", headers=USER, timeout=10)
    assert resp.status_code == 404
    assert resp.json()["detail"] == "no stories record 424242 in this family"
