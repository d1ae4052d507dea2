"""The browsable docs page is generated from the OpenAPI document's own schemas: request and response bodies with
their constraints, and examples that are valid against those schemas."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
from storyverse_gateway_config.openapi import render_html
from storyverse_gateway_config.openapi.schema_view import constraints, example, rows
from storyverse_gateway_config.paths import DOCS_HTML, OPENAPI_JSON

DOC = json.loads(OPENAPI_JSON.read_text())
SCHEMAS = DOC["components"]["schemas"]
METHODS = ("get", "put", "post", "delete", "patch")


def _bodies():
    for path, item in DOC["paths"].items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            for media, spec in op.get("requestBody", {}).get("content", {}).items():
                yield f"{method.upper()} {path} request {media}", spec["schema"]
            for status, resp in op["responses"].items():
                spec = resp.get("content", {}).get("application/json")
                if status.startswith("2") and spec and spec.get("schema"):
                    yield f"{method.upper()} {path} {status}", spec["schema"]


BODIES = list(_bodies())


@pytest.mark.parametrize(("where", "schema"), BODIES, ids=[w for w, _ in BODIES])
def test_every_example_is_valid_against_its_schema(where, schema):
    value = example(schema, SCHEMAS)
    jsonschema.validate(value, {**schema, "components": DOC["components"]})


def test_the_page_is_up_to_date_with_the_document():
    assert DOCS_HTML.read_text() == render_html(DOC)


def _section(html: str, op_id: str) -> str:
    start = html.index(f'<details id="{op_id}">')
    return html[start : html.index("</details>", start)]


def test_login_shows_its_response_body_with_an_example():
    login = _section(DOCS_HTML.read_text(), "auth-login")
    assert "Response 200 body" in login
    for field in ("access_token", "refresh_token", "expires_in", "token_type"):
        assert f"<td><code>{field}</code></td>" in login
    assert "&quot;access_token&quot;:" in login  # in the example


def test_constraints_come_from_the_schemas():
    register = _section(DOCS_HTML.read_text(), "auth-register")
    password = SCHEMAS["RegisterIn"]["properties"]["password"]
    low, high = password["minLength"], password["maxLength"]
    assert re.search(rf"<td><code>password</code></td>.*length {low}–{high} characters", register)
    assert "length 1–200 characters" in _section(DOCS_HTML.read_text(), "stories-create")  # StoryIn.title
    assert constraints({"type": ["string", "null"], "enum": ["a", "b"]}) == ["one of a, b", "may be null"]


def test_nested_fields_are_listed_with_their_path():
    names = [r["name"] for r in rows({"$ref": "#/components/schemas/StoryList"}, SCHEMAS)]
    assert "items" in names and "items[].title" in names and "items[].id" in names


def test_no_literal_markdown_in_the_page():
    html = DOCS_HTML.read_text()
    assert "`" not in html and "**" not in html
    assert '<h2 id="errors">Errors</h2>' in html and "<td><code>request_id</code></td>" in html
