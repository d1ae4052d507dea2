"""Hostile input is a 400 problem, never a 500 (issue 15, item 2): deep JSON, NUL and unpaired surrogates in any
JSON string, query or form value, and non-ASCII/control characters in OAuth protocol parameters. Every route of
the app is tried, so a new endpoint is covered without a new test."""

import json
import re

import pytest
from apiflask import HTTPError
from auth_support import PASSWORD, assert_problem
from hypothesis import given, settings
from hypothesis import strategies as st
from storyverse_auth.input_guard import MAX_JSON_DEPTH, check_json
from werkzeug.middleware.proxy_fix import ProxyFix

DEEP_ARRAY = "[" * 1000 + "]" * 1000
DEEP_OBJECT = '{"a":' * 1200 + "1" + "}" * 1200
NUL_STRING = json.dumps({"email": "a\u0000@example.com", "password": PASSWORD, "refresh_token": "\u0000"})
SURROGATE = '{"email": "\\ud800@example.com", "password": "\\udfff", "refresh_token": "\\ud800"}'
# The same without escapes: a surrogate as UTF-8-shaped bytes (json.loads decodes bytes with surrogatepass), and a
# NUL escape in UTF-16 JSON (json.loads detects the encoding): neither may pass the guard's byte scan.
RAW_SURROGATE = b'{"email": "\xed\xa0\x80@example.com", "password": "x", "refresh_token": "\xed\xbf\xbf"}'
UTF16_NUL = NUL_STRING.encode("utf-16")


def _concrete(rule) -> str:
    """The rule's path with every variable filled with a syntactically valid value."""
    return re.sub(r"<(?:[^:>]+:)?[^>]+>", "0c2f3b52-6d1e-4d6e-9a55-3b8f2f6a9b10", rule.rule)


def _routes(app, methods: set[str]) -> list[tuple[str, str]]:
    return sorted(
        (method, _concrete(rule))
        for rule in app.url_map.iter_rules()
        for method in rule.methods & methods
        if not rule.rule.startswith("/static")
    )


@pytest.fixture
def parent_headers(auth) -> dict:
    return auth.bearer(auth.tokens())


@pytest.mark.parametrize(
    "body",
    [DEEP_ARRAY, DEEP_OBJECT, NUL_STRING, SURROGATE, RAW_SURROGATE, UTF16_NUL],
    ids=["array", "object", "nul", "surr", "raw-surr", "utf16-nul"],
)
def test_every_json_endpoint_answers_hostile_bodies_with_400(app, client, parent_headers, body):
    routes = [(m, p) for m, p in _routes(app, {"POST", "PUT", "PATCH", "DELETE"}) if not p.startswith("/oauth/")]
    assert len(routes) > 20  # the whole JSON surface, not a sample
    for method, path in routes:
        for headers in ({}, parent_headers):
            response = client.open(path, method=method, data=body, content_type="application/json", headers=headers)
            assert_problem(response, 400, "bad_request")


def test_json_within_the_depth_limit_still_reaches_validation(client):
    nested = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    response = client.post("/api/auth/refresh", data=nested, content_type="application/json")
    assert_problem(response, 422, "validation_failed")
    deeper = "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)
    assert_problem(client.post("/api/auth/refresh", data=deeper, content_type="application/json"), 400, "bad_request")


@pytest.mark.parametrize("value", ["%0A", "%00", "%C3%A9", "code%0A", "%7F", "%E2%80%A8"])
@pytest.mark.parametrize("name", ["response_type", "client_id", "redirect_uri", "scope", "state", "prompt"])
def test_authorize_rejects_non_vschar_parameters(client, name, value):
    response = client.get(f"/oauth/authorize?{name}={value}")
    assert_problem(response, 400, "bad_request")


def test_undecodable_percent_escapes_stay_literal_ascii_and_get_the_oauth_error_page(client):
    # Werkzeug keeps "%FF" (not UTF-8) as the three characters "%FF": printable ASCII, so Authlib's own 400 answers.
    response = client.get("/oauth/authorize?response_type=%FF")
    assert response.status_code == 400 and response.mimetype == "text/html"


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/revoke", "/oauth/introspect", "/oauth/authorize"])
def test_oauth_form_endpoints_reject_non_vschar_parameters(client, path):
    for form in ({"grant_type": "é"}, {"grant_type": "x\x01"}, {"token": "a\nb"}, {"client_id": "\x00"}):
        assert_problem(client.post(path, data=form), 400, "bad_request")


def test_consent_credentials_may_be_unicode_but_not_nul(client):
    # The consent form's password is free text: the guard lets it through (the page then answers for itself).
    response = client.post("/oauth/authorize", data={"password": "mot de passe é", "email": "a@example.com"})
    assert response.status_code < 500 and response.mimetype == "text/html"
    assert_problem(client.post("/oauth/authorize", data={"password": "a\x00b"}), 400, "bad_request")


def test_every_get_endpoint_answers_nul_queries_with_400(app, client, parent_headers):
    routes = _routes(app, {"GET"})
    assert len(routes) > 10
    for _, path in routes:
        for headers in ({}, parent_headers):
            assert_problem(client.get(f"{path}?q=%00", headers=headers), 400, "bad_request")
            assert_problem(client.get(f"{path}?%00=1", headers=headers), 400, "bad_request")


@pytest.mark.parametrize(
    "headers",
    [{"User-Agent": "app\x00/1.0"}, {"User-Agent": "é" * 600}, {"User-Agent": "\x01\x02"}],
    ids=["nul", "long-unicode", "controls"],
)
def test_hostile_user_agents_still_log_in(client, auth, headers):
    auth.register()
    response = auth.login(headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    listed = client.get("/api/auth/sessions", headers=auth.bearer(response.get_json())).get_json()["sessions"]
    assert all("\x00" not in (s["user_agent"] or "") and len(s["user_agent"] or "") <= 256 for s in listed)


@pytest.mark.parametrize("forwarded", ["x" * 300, "not-an-ip", "1.2.3.4\x00", "[::1]"])
def test_a_forged_client_address_is_refused_before_it_reaches_throttles_or_sessions(app, client, auth, forwarded):
    auth.register()
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)
    response = auth.login(headers={"X-Forwarded-For": forwarded})
    assert_problem(response, 400, "bad_request")
    assert auth.login(headers={"X-Forwarded-For": "2001:db8::7"}).status_code == 200


# -- the guard's byte scan (input_guard._plainly_safe) never clears what the full check refuses ----------------------

_HOSTILE_CHARS = st.sampled_from(["\x00", "\ud800", "\udbff", "\udc00", "\udfff", "[", "{", "\\", "\u00ed", "a"])
_TEXT = st.lists(_HOSTILE_CHARS | st.characters(), max_size=6).map("".join)  # (text() seldom draws a surrogate)
_LEAVES = st.none() | st.booleans() | st.integers() | _TEXT
_DOCUMENTS = st.recursive(
    _LEAVES, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3)
)
# every encoding json.loads detects in bytes (json.detect_encoding), each with surrogatepass as json.loads decodes
_ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"]


def _refused(document, depth: int = 1) -> bool:
    """What the guard must refuse, computed independently: a NUL or a lone surrogate anywhere, or depth > limit."""
    if isinstance(document, str):
        return "\x00" in document or any(0xD800 <= ord(c) <= 0xDFFF for c in document)
    if isinstance(document, dict):
        document = [*document.keys(), *document.values()]
    if isinstance(document, list):
        return depth > MAX_JSON_DEPTH or any(_refused(child, depth + 1) for child in document)
    return False


@settings(max_examples=400, deadline=None, database=None)  # nothing written into the work tree
@given(
    document=_DOCUMENTS,
    wrappers=st.integers(0, 2) | st.integers(MAX_JSON_DEPTH - 2, MAX_JSON_DEPTH + 1),
    kinds=st.sampled_from(["list", "object", "mixed"]),
    ensure_ascii=st.booleans(),
    indent=st.sampled_from([None, 0, 2]),
    encoding=st.sampled_from(_ENCODINGS),
)
def test_every_body_json_loads_decodes_to_something_unstorable_is_refused(
    document, wrappers, kinds, ensure_ascii, indent, encoding
):
    for level in range(wrappers):  # nesting near and past the limit, in lists, objects or both
        document = [document] if kinds == "list" or (kinds == "mixed" and level % 2) else {"k": document}
    text = json.dumps(document, ensure_ascii=ensure_ascii, indent=indent)
    raw = text.encode(encoding, "surrogatepass")
    if _refused(json.loads(raw)):  # what a view would read (an escaped surrogate pair is one character again)
        with pytest.raises(HTTPError) as refused:
            check_json(raw)
        assert refused.value.status_code == 400
    else:
        check_json(raw)
