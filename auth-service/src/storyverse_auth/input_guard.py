"""Hostile input stops here, once, before any view: a bad body or query is a 400 problem, never a 500 (issue 15).

What reached the views before and broke them:

- JSON nested ~1,000 levels deep: ``json.loads`` raises ``RecursionError`` (not ``ValueError``), which webargs and
  Werkzeug do not treat as a decoding error. Bodies are parsed here with a depth limit far above any schema's
  (``MAX_JSON_DEPTH``) and the recursion caught.
- NUL characters and lone surrogates (``"\\u0000"``, ``"\\ud800"``) in any JSON string, query or form value:
  PostgreSQL refuses both (psycopg2 raises ``ValueError`` / ``UnicodeEncodeError``), wherever the value is used.
- The OAuth protocol parameters (RFC 6749 Appendix A: ``%x20-7E``): Authlib copies some of them into error
  descriptions and raises ``ValueError`` on a control or non-ASCII character. The consent form's credentials
  (e-mail, password, child sign-in) are free text and only get the NUL/surrogate rule.

The views parse the body again through webargs; the JSON checked here is small (``MAX_CONTENT_LENGTH``) and at
most ``MAX_JSON_DEPTH`` deep, so that second parse cannot fail in a new way.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

from flask import Flask, request

from .errors import APIError

MAX_JSON_DEPTH = 32
# Values a user types on the consent page; every other /oauth parameter is an RFC 6749 protocol element.
OAUTH_FREE_TEXT = frozenset({"email", "password", "family_code", "username", "pin"})
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_NOT_VSCHAR = re.compile("[^\x20-\x7e]")
_CONTROL = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


def init_app(app: Flask, oauth_blueprints: frozenset[str]) -> None:
    app.before_request(lambda: check_request(oauth_blueprints))


def check_request(oauth_blueprints: frozenset[str]) -> None:
    """Raise a 400 problem for a query, form or JSON body the service cannot handle safely."""
    _check_client_address(request.remote_addr)
    oauth = request.blueprint in oauth_blueprints
    for name, value in request.args.items(multi=True):
        _check_field(name, value, oauth)
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        for name, value in request.form.items(multi=True):
            _check_field(name, value, oauth)
    elif request.is_json and request.content_length != 0:
        check_json(request.get_data(cache=True))


def _check_client_address(address: str | None) -> None:
    """With TRUST_PROXY_HOPS the address comes from X-Forwarded-For: it must be an IP (it keys throttles and is
    stored with sessions). A trusted proxy always writes one, so anything else was forged past it."""
    if not address:
        return  # a Unix-socket listener has no peer address
    try:
        ipaddress.ip_address(address)
    except ValueError as exc:
        raise APIError.bad_request("The client address (X-Forwarded-For) is not an IP address.") from exc


def storable_text(value: str | None, limit: int) -> str | None:
    """Free text from a header (User-Agent), made fit for a column: no control characters, at most ``limit``."""
    cleaned = _CONTROL.sub("", value or "")[:limit]
    return cleaned or None


def _check_field(name: str, value: str, oauth: bool) -> None:
    if _UNSTORABLE.search(name) or _UNSTORABLE.search(value):
        raise APIError.bad_request("Parameters must not contain NUL characters or unpaired surrogates.")
    if oauth and name not in OAUTH_FREE_TEXT and (_NOT_VSCHAR.search(name) or _NOT_VSCHAR.search(value)):
        raise APIError.bad_request(f"OAuth parameters are printable ASCII (RFC 6749 Appendix A); {name[:40]!r} is not.")


def _plainly_safe(raw: bytes) -> bool:
    """True when ``raw`` cannot hold what ``check_json`` refuses, without decoding it. A NUL or a surrogate in a JSON
    string is written as a ``\\u`` escape (raw control characters are invalid JSON) or, for a surrogate, as the
    UTF-8-shaped bytes ``ED A0..BF ..`` (``json.loads`` decodes bytes with ``surrogatepass``); the nesting depth is at
    most the number of opening brackets. Any ``ED`` byte (also the lead of U+D000–U+D7FF) or NUL byte (UTF-16 and
    UTF-32 JSON, which ``json.loads`` accepts, hold one per ASCII character) sends the body to the full check. Most
    bodies (a refresh, a login) pass this byte scan and are decoded once, by the view's parser."""
    if b"\x00" in raw or b"\xed" in raw or b"\\u" in raw:
        return False
    return raw.count(b"{") + raw.count(b"[") <= MAX_JSON_DEPTH


def check_json(raw: bytes) -> Any:
    """The decoded document (None when there is nothing to check), or a 400 problem: too deep, or holding
    unstorable strings. Malformed JSON is left to the view's parser (webargs), which answers it with its own 400."""
    if not raw.strip() or _plainly_safe(raw):
        return None  # an empty body: the schema decides whether one was required
    try:
        document = json.loads(raw)
    except RecursionError as exc:
        raise APIError.bad_request(f"The JSON body is nested deeper than {MAX_JSON_DEPTH} levels.") from exc
    except ValueError:
        return None  # malformed JSON: webargs answers it with its own 400, as before
    _walk(document)
    return document


def _walk(document: Any) -> None:
    """Iterative (no recursion of our own): depth limit and storable strings, keys included."""
    stack = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            if _UNSTORABLE.search(node):
                raise APIError.bad_request("JSON strings must not contain NUL characters or unpaired surrogates.")
        elif isinstance(node, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise APIError.bad_request(f"The JSON body is nested deeper than {MAX_JSON_DEPTH} levels.")
            children = list(node.keys()) + list(node.values()) if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
