"""The parent pages' operations (auth service pages/, issue 20): HTML forms with a CSRF token, a 303 to sign in when
signed out. Kept out of the service's own document like OAuth, so written here."""

from __future__ import annotations

import copy
from typing import Any

from storyverse_gateway_config import routes as R
from storyverse_gateway_config.openapi.operations import HTML_PAGE

PAGE_FORM = {
    "required": True,
    "content": {
        "application/x-www-form-urlencoded": {
            "schema": {
                "type": "object",
                "description": "The page's form: `csrf_token` (from the page) and its fields.",
                "properties": {"csrf_token": {"type": "string"}},
                "additionalProperties": {"type": "string"},
            }
        }
    },
}
SEE_OTHER = {"description": "See Other: the next page (after a form, or to sign in first).",
             "headers": {"Location": {"schema": {"type": "string"}}}}  # fmt: skip
PAGE_ERRORS = {
    "400": "The form is incomplete (the page again, saying what is missing).",
    "401": "Wrong credentials or authenticator code (the page again).",
    "403": "The form's CSRF token is missing or stale: an error page.",
    "404": "No such child, device or app in the parent's family: an error page.",
    "409": "The child's profile has no consent yet (the page again).",
}
PAGE_RESPONSES = {  # (gateway route, method) → the statuses its page answers
    ("parent-sign-in", "GET"): ("200", "303"),
    ("parent-sign-in", "POST"): ("303", "400", "401", "403"),
    ("parent-sign-out", "POST"): ("303", "403"),
    ("parent-device", "GET"): ("200", "303"),
    ("parent-device", "POST"): ("200", "400", "403", "404", "409"),
    ("parent-family", "GET"): ("200", "303"),
    ("parent-session-revoke", "POST"): ("303", "403", "404"),
    ("parent-app-revoke", "POST"): ("303", "403", "404"),
}


def page_operation(ep: R.Endpoint, method: str) -> dict[str, Any]:
    op: dict[str, Any] = {"tags": ["Parent pages"], "summary": ep.summary}
    if ep.name == "parent-device" and method == "GET":
        op["parameters"] = [{"name": "user_code", "in": "query", "required": False, "schema": {"type": "string"},
                             "description": "The device's code, prefilled (`verification_uri_complete`)."}]  # fmt: skip
    if method == "POST":
        op["requestBody"] = copy.deepcopy(PAGE_FORM)
    responses: dict[str, Any] = {}
    for status in PAGE_RESPONSES[(ep.name, method)]:
        if status == "303":
            responses[status] = copy.deepcopy(SEE_OTHER)
        else:
            text = "The page." if status == "200" else PAGE_ERRORS[status]
            responses[status] = {"description": text, "content": copy.deepcopy(HTML_PAGE)}
    op["responses"] = responses
    return op
