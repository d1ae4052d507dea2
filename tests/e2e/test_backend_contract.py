"""The sample backend stand-in keeps the backend ownership contract (docs/backend-contract.md), asked directly.

A real process (`python -m sample_backend`), identity headers as the gateway sets them. Through the gateway the same
rules are asserted by the authorization matrix (tests/e2e/test_authz_matrix.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from sample_backend import schemas
from sample_backend.testing import running

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e]


def who(user: str, family: str, role: str = "parent", rating: str | None = None) -> dict[str, str]:
    headers = {"X-User-Id": user, "X-User-Role": role, "X-Family-Id": family}
    if rating:
        headers["X-Content-Rating"] = rating
    return headers


PARENT_A, COPARENT_A, PARENT_B = who("pa", "A"), who("co", "A"), who("pb", "B")
CHILD_A = who("ca", "A", "child", "TV-Y7")


@pytest.fixture(scope="module")
def stories():
    with running("stories") as urls:
        yield urls["stories"] + "/api/stories"


def create(url: str, headers: dict[str, str], **body) -> dict:
    resp = requests.post(url, json=body, headers=headers, timeout=10)
    assert resp.status_code == 201, resp.text
    return resp.json()["item"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-User-Id": "pa", "X-User-Role": "parent"}, who("ca", "A", "child"), who("pa", "A", rating="R-18")],
    ids=["none", "no-family", "child-without-rating", "unknown-rating"],
)
def test_a_request_without_a_readable_identity_is_refused(stories, headers):
    for method in ("GET", "POST"):
        resp = requests.request(method, stories, json={"title": "x"}, headers=headers, timeout=10)
        assert resp.status_code == 401, resp.text
        assert resp.headers["Content-Type"].startswith("application/problem+json")


def test_records_belong_to_the_family_and_another_familys_id_does_not_exist(stories):
    story = create(stories, PARENT_A, title="Moon")
    assert story["created_by"] == "pa" and story["content_rating"] == "TV-Y"
    item = f"{stories}/{story['id']}"
    for headers in (PARENT_A, COPARENT_A, CHILD_A):
        assert requests.get(item, headers=headers, timeout=10).json()["item"]["title"] == "Moon"
        assert story["id"] in [r["id"] for r in requests.get(stories, headers=headers, timeout=10).json()["items"]]
    assert requests.patch(item, json={"title": "Sun"}, headers=COPARENT_A, timeout=10).status_code == 200
    for method in ("GET", "PUT", "PATCH", "DELETE"):
        resp = requests.request(method, item, json={"title": "stolen"}, headers=PARENT_B, timeout=10)
        assert resp.status_code == 404, (method, resp.text)
    assert story["id"] not in [r["id"] for r in requests.get(stories, headers=PARENT_B, timeout=10).json()["items"]]
    assert requests.get(item, headers=PARENT_A, timeout=10).json()["item"]["title"] == "Sun"  # B changed nothing


def test_a_child_sees_only_what_its_rating_allows(stories):
    mild = create(stories, PARENT_A, title="Kittens", content_rating="TV-Y7")
    strong = create(stories, PARENT_A, title="Ghosts", content_rating="TV-PG")
    listed = [r["id"] for r in requests.get(stories, headers=CHILD_A, timeout=10).json()["items"]]
    assert mild["id"] in listed and strong["id"] not in listed
    assert requests.get(f"{stories}/{strong['id']}", headers=CHILD_A, timeout=10).status_code == 404
    assert requests.get(f"{stories}/{strong['id']}", headers=COPARENT_A, timeout=10).status_code == 200
    # a child's write is never rated above what it may see; the record stays visible to it
    own = create(stories, CHILD_A, title="My dragon", content_rating="TV-14")
    assert own["content_rating"] == "TV-Y7"
    lowered = requests.patch(f"{stories}/{mild['id']}", json={"content_rating": "TV-14"}, headers=CHILD_A, timeout=10)
    assert lowered.json()["item"]["content_rating"] == "TV-Y7"


def test_bodies_the_document_refuses_are_refused(stories):
    for body in ({"title": "x", "content_rating": "R"}, {}, {"title": ""}, {"title": "x", "character_ids": ["4*"]}):
        resp = requests.post(stories, json=body, headers=PARENT_A, timeout=10)
        assert resp.status_code == 422, (body, resp.text)
    assert requests.post(stories, data=b"[1]", headers=PARENT_A, timeout=10).status_code == 400


def test_the_stand_ins_body_schemas_are_the_documents():
    doc = json.loads((REPO / "docs/openapi/storyverse.json").read_text())["components"]["schemas"]

    def bare(schema):  # the document's annotations (description, examples) do not validate anything
        if isinstance(schema, dict):
            return {k: bare(v) for k, v in schema.items() if k != "examples" and (k, type(v)) != ("description", str)}
        return [bare(v) for v in schema] if isinstance(schema, list) else schema

    for name, mine in (("StoryIn", schemas.STORY_IN), ("StoryPatch", schemas.STORY_PATCH),
                       ("CharacterIn", schemas.CHARACTER_IN), ("UniverseIn", schemas.UNIVERSE_IN),
                       ("GenerationIn", schemas.GENERATION_IN)):  # fmt: skip
        assert bare(doc[name]) == mine, name
