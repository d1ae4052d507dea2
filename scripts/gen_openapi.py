"""Render the public API's OpenAPI 3.1 document and its browsable page (docs/openapi/) from the gateway's table.

    .venv/bin/python scripts/gen_openapi.py            # rewrite docs/openapi/storyverse.json and index.html
    .venv/bin/python scripts/gen_openapi.py --check    # exit 1 when either is out of date (a test runs it)
    .venv/bin/python scripts/gen_kong_yml.py           # then: kong.yml (its docs routes name both files, which
                                                       #   the Kong image bakes in and sv-edge serves)

One document for everything the gateway routes (scripts/gateway_routes.py: the 16 seed endpoints, the auth
service's, OAuth, the docs themselves), with the gateway's paths (/api/v1/...), its security (bearer JWT; public
routes say `security: []`), its limits (RateLimit/X-Quota headers, 429) and its one error format (RFC 9457
problem documents with `code` and `request_id`). Where each part comes from:

* the auth service's endpoints: its own served document (apiflask), fetched in-process through its app factory
  and `test_client()`, paths rewritten from the service's (/api/auth/...) to the gateway's (/api/v1/auth/...);
  only the routed operations are kept (admin, usage, API keys and ops endpoints are not public);
* stories, characters, universes and generation: the schemas below (the contract the services are held to;
  the sample backend plays them locally);
* OAuth (form-encoded, answered in OAuth's own error format, so the provider keeps it out of its document) and
  the docs endpoints: written below.

Every operation also carries the gateway's facts as extensions (`x-storyverse-route`, `-roles`, `-rate-limits`,
`-daily-quota`, `-cached`); tests/e2e/test_public_api_docs.py checks them against kong.yml in both directions.
"""

from __future__ import annotations

import argparse
import copy
import html
import json
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gateway_routes as R

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "docs" / "openapi"
OPENAPI_JSON = OUT_DIR / "storyverse.json"
DOCS_HTML = OUT_DIR / "index.html"
AUTH_SRC = REPO / "auth-service" / "src"
VERSION = "v1"
PROBLEM_MEDIA = "application/problem+json"
PARAM = re.compile(r"\(\?<(\w+)>([^)]*)\)")

# -- schemas of the backends' contract ---------------------------------------------------------------------------

ID = {"type": "string", "pattern": "^[0-9]+$", "description": "A numeric id, as a string.", "examples": ["42"]}


def _obj(props: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = required
    return {**out, **extra}


def _envelope(name: str, many: bool) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{name}"}
    field = "items" if many else "item"
    return _obj({field: {"type": "array", "items": ref} if many else ref}, [field])


BACKEND_SCHEMAS: dict[str, Any] = {
    "StoryIn": _obj(
        {
            "title": {"type": "string", "minLength": 1, "maxLength": 200},
            "text": {"type": "string", "description": "The story itself."},
            "universe_id": {**ID, "description": "The universe the story is set in."},
            "character_ids": {"type": "array", "items": ID, "maxItems": 25},
        },
        ["title"],
    ),
    "StoryPatch": _obj(
        {
            "title": {"type": "string", "minLength": 1, "maxLength": 200},
            "text": {"type": "string"},
            "universe_id": ID,
            "character_ids": {"type": "array", "items": ID, "maxItems": 25},
        }
    ),
    "Story": {
        "allOf": [{"$ref": "#/components/schemas/StoryIn"}, _obj({"id": ID}, ["id"])],
        "description": "A story of the caller's family.",
    },
    "ExpandedStory": {
        "allOf": [
            {"$ref": "#/components/schemas/Story"},
            _obj(
                {
                    "characters": {"type": "array", "items": {"$ref": "#/components/schemas/Character"}},
                    "universe": {"oneOf": [{"$ref": "#/components/schemas/Universe"}, {"type": "null"}]},
                    "_expanded": {
                        "type": "object",
                        "description": "Per expansion: `ok`, `partial` or `failed`, and why ids were left out "
                        "(`not_found`, `forbidden`, `timeout`, `error`, `invalid_id`, `over_limit`).",
                        "additionalProperties": _obj(
                            {
                                "status": {"enum": ["ok", "partial", "failed"]},
                                "errors": {"type": "object", "additionalProperties": {"type": "string"}},
                            },
                            ["status"],
                        ),
                    },
                }
            ),
        ],
        "description": "A story with `?expand=characters,universe`: composed by the gateway (sv-expand) from the "
        "characters and universes services in one answer; a part that failed is marked, not fatal.",
    },
    "CharacterIn": _obj(
        {
            "name": {"type": "string", "minLength": 1, "maxLength": 100},
            "description": {"type": "string"},
            "universe_id": ID,
        },
        ["name"],
    ),
    "Character": {"allOf": [{"$ref": "#/components/schemas/CharacterIn"}, _obj({"id": ID}, ["id"])]},
    "UniverseIn": _obj(
        {"name": {"type": "string", "minLength": 1, "maxLength": 100}, "description": {"type": "string"}},
        ["name"],
    ),
    "Universe": {"allOf": [{"$ref": "#/components/schemas/UniverseIn"}, _obj({"id": ID}, ["id"])]},
    "GenerationIn": _obj(
        {
            "prompt": {"type": "string", "minLength": 1, "maxLength": 2000},
            "story_id": {**ID, "description": "The story this is for (optional)."},
        },
        ["prompt"],
    ),
    "Generation": _obj(
        {
            "id": ID,
            "prompt": {"type": "string"},
            "story_id": ID,
            "result": {"type": "string", "description": "Text, or the URL of the image or audio."},
        },
        ["id"],
    ),
    "StoryList": _envelope("Story", True),
    "StoryItem": _envelope("Story", False),
    "ExpandedStoryItem": _envelope("ExpandedStory", False),
    "CharacterList": _envelope("Character", True),
    "CharacterItem": _envelope("Character", False),
    "UniverseList": _envelope("Universe", True),
    "UniverseItem": _envelope("Universe", False),
    "GenerationItem": _envelope("Generation", False),
}

# (request schema, success status, response schema) per seed endpoint of the backends
BACKEND_OPS: dict[tuple[str, str], tuple[str | None, str, str | None]] = {
    ("stories-list", "GET"): (None, "200", "StoryList"),
    ("stories-create", "POST"): ("StoryIn", "201", "StoryItem"),
    ("stories-get", "GET"): (None, "200", "ExpandedStoryItem"),
    ("stories-update", "PUT"): ("StoryIn", "200", "StoryItem"),
    ("stories-update", "PATCH"): ("StoryPatch", "200", "StoryItem"),
    ("stories-delete", "DELETE"): (None, "204", None),
    ("characters-list", "GET"): (None, "200", "CharacterList"),
    ("characters-create", "POST"): ("CharacterIn", "201", "CharacterItem"),
    ("characters-get", "GET"): (None, "200", "CharacterItem"),
    ("universes-list", "GET"): (None, "200", "UniverseList"),
    ("universes-create", "POST"): ("UniverseIn", "201", "UniverseItem"),
    ("universes-get", "GET"): (None, "200", "UniverseItem"),
    ("generate", "POST"): ("GenerationIn", "201", "GenerationItem"),
}
TAGS = {"stories": "Stories", "characters": "Characters", "universes": "Universes", "generation": "Generation"}

PROBLEM = {
    "type": "object",
    "description": "RFC 9457 problem details. Every error a client sees, from the gateway, its plugins or a "
    "service, has this shape (OAuth endpoints excepted: their own errors follow RFC 6749).",
    "properties": {
        "type": {"type": "string", "format": "uri-reference", "default": "about:blank"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 100, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string", "format": "uri-reference"},
        "code": {"type": "string", "description": "A stable, machine-readable error code.",
                 "examples": ["invalid_token", "rate_limited", "daily_quota_exceeded", "route_not_found"]},
        "request_id": {"type": "string", "description": "The X-Request-Id of this request (quote it to support)."},
        "errors": {"type": "object", "description": "Field errors of a validation failure."},
    },
    "required": ["code", "request_id"],
    "additionalProperties": True,
}  # fmt: skip

OAUTH_SCHEMAS: dict[str, Any] = {
    "OAuthError": _obj(
        {
            "error": {"type": "string", "examples": ["invalid_grant", "invalid_client", "invalid_request"]},
            "error_description": {"type": "string"},
        },
        ["error"],
        description="OAuth 2.1 error (RFC 6749 §5.2), as OAuth client libraries expect.",
    ),
    "OAuthToken": _obj(
        {
            "access_token": {"type": "string"},
            "token_type": {"const": "Bearer"},
            "expires_in": {"type": "integer"},
            "refresh_token": {"type": "string"},
            "id_token": {"type": "string"},
            "scope": {"type": "string"},
        },
        ["access_token", "token_type", "expires_in"],
    ),
    "OAuthTokenRequest": _obj(
        {
            "grant_type": {"enum": ["authorization_code", "refresh_token"]},
            "code": {"type": "string"},
            "redirect_uri": {"type": "string", "format": "uri"},
            "code_verifier": {"type": "string", "description": "PKCE (S256) verifier."},
            "client_id": {"type": "string"},
            "refresh_token": {"type": "string"},
            "scope": {"type": "string"},
        },
        ["grant_type"],
    ),
    "OAuthTokenHint": _obj(
        {"token": {"type": "string"}, "token_type_hint": {"enum": ["access_token", "refresh_token"]}},
        ["token"],
    ),
    "OAuthIntrospection": _obj(
        {
            "active": {"type": "boolean"},
            "scope": {"type": "string"},
            "client_id": {"type": "string"},
            "sub": {"type": "string"},
            "token_type": {"type": "string"},
            "exp": {"type": "integer"},
            "iat": {"type": "integer"},
        },
        ["active"],
    ),
    "OAuthAuthorizeForm": _obj(
        {
            "csrf_token": {"type": "string"},
            "action": {"enum": ["approve", "deny"]},
            "email": {"type": "string", "format": "email"},
            "password": {"type": "string", "format": "password"},
            "response_type": {"const": "code"},
            "client_id": {"type": "string"},
            "redirect_uri": {"type": "string", "format": "uri"},
            "scope": {"type": "string"},
            "state": {"type": "string"},
            "nonce": {"type": "string"},
            "code_challenge": {"type": "string"},
            "code_challenge_method": {"const": "S256"},
        },
        ["csrf_token", "action", "client_id"],
    ),
    "UserInfo": _obj(
        {"sub": {"type": "string"}, "name": {"type": "string"}, "email": {"type": "string", "format": "email"},
         "email_verified": {"type": "boolean"}},
        ["sub"],
    ),
}  # fmt: skip

HEADERS: dict[str, Any] = {
    "X-Request-Id": {"description": "This request's id (also `request_id` in problem documents).",
                     "schema": {"type": "string"}},
    "RateLimit": {"description": "The binding rate limit now (IETF draft): `\"<policy>\";r=<remaining>;t=<reset s>`.",
                  "schema": {"type": "string"}, "example": '"stories-list-minute";r=119;t=1'},
    "RateLimit-Policy": {"description": "The binding policy: `\"<policy>\";q=<limit>;w=<window s>`.",
                         "schema": {"type": "string"}, "example": '"stories-list-minute";q=120;w=60'},
    "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}},
    "X-Quota-Limit": {"description": "The family's daily story quota (basic 5, premium 20).",
                      "schema": {"type": "integer"}},
    "X-Quota-Remaining": {"description": "Stories and generations left today.", "schema": {"type": "integer"}},
    "X-Quota-Reset": {"description": "Seconds until the quota resets (midnight in the family's time zone).",
                      "schema": {"type": "integer"}},
    "X-Cache-Status": {"description": "The gateway cache: `Miss`, `Hit` or `Bypass` (30 s, per caller).",
                       "schema": {"enum": ["Miss", "Hit", "Refresh", "Bypass"]}},
    "WWW-Authenticate": {"description": "`Bearer realm=..., error=...` (RFC 6750).", "schema": {"type": "string"}},
}  # fmt: skip

ERRORS = {  # status → (component name, description, extra headers)
    "400": ("BadRequest", "The request is malformed.", ()),
    "401": ("Unauthorized", "No valid access token (a public route refuses a token that is present but invalid).",
            ("WWW-Authenticate",)),
    "403": ("Forbidden", "The caller's role, family or parental controls do not allow this.", ()),
    "404": ("NotFound", "No such resource (a malformed id is a 404 from the gateway).", ()),
    "413": ("ContentTooLarge", "The request body is too large.", ()),
    "415": ("UnsupportedMediaType", "The request body is not JSON.", ()),
    "422": ("UnprocessableContent", "The request body is not valid.", ()),
    "429": ("TooManyRequests", "A rate limit, or the daily story quota, is exhausted (`code` says which).",
            ("Retry-After", "RateLimit", "RateLimit-Policy")),
    "502": ("BadGateway", "The service could not be reached.", ()),
    "503": ("ServiceUnavailable", "The gateway cannot verify requests right now, or the service is down.", ()),
    "504": ("GatewayTimeout", "The service did not answer in time.", ()),
}  # fmt: skip
GATEWAY_ERRORS = ("429", "502", "503", "504")

DESCRIPTION = """\
Everything a StoryVerse client can call, as the API gateway serves it. Parents and children create bedtime stories
with characters and universes, and generate text, images and audio for them.

**Base path.** `/api/v1/...` is canonical; `/api/...` is an alias of the current version (same routes, limits and
counters). A retired version answers `410 Gone`; a deprecated one adds `Deprecation`, `Sunset` and `Link` headers.
Discovery, JWKS and OAuth live at their standard unversioned locations.

**Authentication.** Send `Authorization: Bearer <access token>` (a JWT from login, refresh, device or child
sign-in, or OAuth). Operations marked `security: []` are public: no token needed, but a token that is present and
invalid is still refused (`401`). Roles (`parent`, `child`, `admin`) are in `x-storyverse-roles`.

**Errors.** Every error is an RFC 9457 `application/problem+json` document with a stable `code` and the
`request_id` (also the `X-Request-Id` header). The OAuth endpoints answer their protocol's own errors (RFC 6749).

**Limits.** Each endpoint has rate limits per user (per client IP on public endpoints), in
`x-storyverse-rate-limits`, announced in `RateLimit`/`RateLimit-Policy` headers and answered with `429` and
`Retry-After` when exhausted. Story creation and generation also charge the family's daily story quota (basic 5,
premium 20 per local day; `X-Quota-*` headers; `429` when exhausted).

**Caching.** Reads of universes and characters may be answered from the gateway's cache for up to 30 seconds
(`X-Cache-Status: Hit`), per caller: a change may take that long to show in a list.
"""

# -- the auth service's own document ------------------------------------------------------------------------------


def auth_service_document() -> dict[str, Any]:
    """The auth service's served /openapi.json, in-process (its app factory and Flask's test client)."""
    if str(AUTH_SRC) not in sys.path:
        sys.path.insert(0, str(AUTH_SRC))
    import logging

    from storyverse_auth import create_app

    app = create_app({"TESTING": True, "LOG_LEVEL": "WARNING"})
    logging.getLogger("storyverse_auth.access").setLevel(logging.WARNING)
    resp = app.test_client().get("/openapi.json")
    if resp.status_code != 200:
        raise SystemExit(f"the auth service's /openapi.json answered {resp.status_code}")
    doc = resp.get_json()
    # The rate limiting service's routed endpoints (the parents' usage view, the admin API) come from its document.
    from storyverse_ratelimit import create_app as create_rate_limiting_app

    rls = create_rate_limiting_app({"TESTING": True}).test_client().get("/openapi.json").get_json()
    doc["paths"].update(rls["paths"])
    doc["components"]["schemas"] = {**rls["components"]["schemas"], **doc["components"]["schemas"]}
    return doc


# -- building ----------------------------------------------------------------------------------------------------


def gateway_path(ep: R.Endpoint, version: str = VERSION) -> str:
    path = PARAM.sub(r"{\1}", ep.path)
    return f"/api/{version}{path}" if ep.versioned else path


def upstream_path(ep: R.Endpoint) -> str:
    """Where the auth service serves it: the gateway strips the version (/api/v1/auth/x → /api/auth/x)."""
    path = PARAM.sub(r"{\1}", ep.path)
    return f"/api{path}" if ep.versioned else path


def path_parameters(ep: R.Endpoint) -> list[dict[str, Any]]:
    out = []
    for name, pattern in PARAM.findall(ep.path):
        schema: dict[str, Any] = {"type": "string", "pattern": f"^(?:{pattern})$"}
        if name == "kind":
            schema = {"type": "string", "enum": list(R.GENERATION_KINDS)}
        elif pattern == R.UUID:
            schema = {"type": "string", "format": "uuid"}
        out.append({"name": name, "in": "path", "required": True, "schema": schema})
    return out


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _success_headers(ep: R.Endpoint) -> dict[str, Any]:
    names = ["X-Request-Id", "RateLimit", "RateLimit-Policy"]
    if ep.daily_quota:
        names += ["X-Quota-Limit", "X-Quota-Remaining", "X-Quota-Reset"]
    if ep.cache:
        names.append("X-Cache-Status")
    return {n: _ref("headers", n) for n in names}


def _limits(ep: R.Endpoint) -> list[dict[str, Any]]:
    per = "ip" if ep.public else "user"
    return [{"limit": n, "period": period, "per": per} for n, period in ep.limits]


def _access_text(ep: R.Endpoint) -> str:
    by = "client IP" if ep.public else "user"
    limits = ", ".join(f"{n}/{period}" for n, period in ep.limits)
    who = "Public (no token)." if ep.public else f"Roles: {', '.join(ep.roles)}."
    text = f"{who} Limits per {by}: {limits}."
    if ep.daily_quota:
        text += " Charges the family's daily story quota."
    if ep.cache:
        text += " Answers may come from the gateway cache (30 s, per caller)."
    return text


def decorate(op: dict[str, Any], ep: R.Endpoint, method: str) -> dict[str, Any]:
    """The gateway's part of an operation: id, security, path parameters, limits, headers, error responses."""
    op["operationId"] = ep.name if len(ep.methods) == 1 else f"{ep.name}-{method.lower()}"
    if ep.public and ep.name != "oauth-userinfo":
        op["security"] = []
    elif not ep.public:
        op["security"] = [{"bearerAuth": []}]
    params = [p for p in op.get("parameters", []) if p.get("in") != "path"]
    op["parameters"] = path_parameters(ep) + params
    if not op["parameters"]:
        del op["parameters"]
    note = _access_text(ep)
    op["description"] = f"{op['description']}\n\n{note}" if op.get("description") else note
    responses = op.setdefault("responses", {})
    for status, response in responses.items():
        if status.startswith("2"):
            response.setdefault("headers", {}).update(_success_headers(ep))
    statuses = list(GATEWAY_ERRORS)
    if not ep.public:
        statuses += ["401", "403"]
    elif not ep.protocol_errors:
        statuses += ["401"]
    if PARAM.search(ep.path) and ep.service != "auth":
        statuses.append("404")
    for status in statuses:
        if status not in responses or status in GATEWAY_ERRORS:
            responses[status] = _ref("responses", ERRORS[status][0])
    if ep.service == "auth" and not ep.served:  # the auth service's input guard: malformed input is a 400 problem
        bad = responses.setdefault("400", {"description": ERRORS["400"][1]})
        if ep.protocol_errors and "$ref" not in bad:
            bad.setdefault("content", {})[PROBLEM_MEDIA] = {"schema": _ref("schemas", "Problem")}
    for status, response in responses.items():  # the service's own errors, in the one format, keep their meaning
        if status[0] in "45" and "$ref" not in response and not ep.protocol_errors:
            extra = ERRORS[status][2] if status in ERRORS else ()
            response["description"] = response.get("description") or ERRORS[status][1]
            response["headers"] = {h: _ref("headers", h) for h in ("X-Request-Id", *extra)}
            response["content"] = {PROBLEM_MEDIA: {"schema": _ref("schemas", "Problem")}}
    op["responses"] = dict(sorted(responses.items()))
    op["x-storyverse-route"] = ep.name
    op["x-storyverse-roles"] = list(ep.roles)
    op["x-storyverse-rate-limits"] = _limits(ep)
    op["x-storyverse-daily-quota"] = ep.daily_quota
    op["x-storyverse-cached"] = ep.cache
    return op


def backend_operation(ep: R.Endpoint, method: str) -> dict[str, Any]:
    request, status, response = BACKEND_OPS[(ep.name, method)]
    op: dict[str, Any] = {"tags": [TAGS[ep.service]], "summary": ep.summary}
    if ep.name == "stories-get":
        op["parameters"] = [
            {
                "name": "expand",
                "in": "query",
                "required": False,
                "description": "Compose the story with its `characters` and/or `universe` (comma-separated).",
                "schema": {"type": "string", "pattern": "^(characters|universe)(,(characters|universe))?$"},
            }
        ]
    if request:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref("schemas", request)}}}
        op["responses"] = {"400": {}, "415": {}, "422": {}}
    else:
        op["responses"] = {"400": {}} if ep.name == "stories-get" else {}  # sv-expand: an unknown ?expand= name
    if response:
        content = {"application/json": {"schema": _ref("schemas", response)}}
        op["responses"][status] = {"description": "Created" if status == "201" else "OK", "content": content}
    else:
        op["responses"][status] = {"description": "Deleted"}
    op["responses"] = {k: (v or {"description": ERRORS[k][1]}) for k, v in op["responses"].items()}
    return op


def auth_operation(auth_doc: dict[str, Any], ep: R.Endpoint, method: str) -> dict[str, Any]:
    path = upstream_path(ep)
    try:
        op = copy.deepcopy(auth_doc["paths"][path][method.lower()])
    except KeyError:
        raise SystemExit(f"{method} {path} ({ep.name}) is routed but not in the auth service's document") from None
    op.pop("operationId", None)
    op.pop("security", None)
    return op


def _form(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": _ref("schemas", schema)}}}


def _oauth_error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref("schemas", "OAuthError")}}}


HTML_PAGE = {"text/html": {"schema": {"type": "string"}}}
REDIRECT = {"description": "Back to the client's redirect_uri with `code` and `state`, or `error`.",
            "headers": {"Location": {"schema": {"type": "string", "format": "uri"}}}}  # fmt: skip
CLIENT_AUTH = [{}, {"oauthClientBasic": []}]  # public clients (PKCE) send none; confidential ones HTTP Basic


def oauth_operation(ep: R.Endpoint, method: str) -> dict[str, Any]:
    query = ["response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "code_challenge",
             "code_challenge_method", "prompt"]  # fmt: skip
    required = {"response_type", "client_id", "redirect_uri", "code_challenge", "code_challenge_method"}
    op: dict[str, Any] = {"tags": ["OAuth"], "summary": ep.summary}
    if ep.name == "oauth-authorize" and method == "GET":
        op["parameters"] = [
            {"name": n, "in": "query", "required": n in required, "schema": {"type": "string"}} for n in query
        ]
        op["responses"] = {
            "200": {"description": "The sign-in and consent page (parents only).", "content": HTML_PAGE},
            "302": REDIRECT,
            "400": {"description": "Unknown client or redirect URI: an error page.", "content": HTML_PAGE},
        }
    elif ep.name == "oauth-authorize":
        op["requestBody"] = _form("OAuthAuthorizeForm")
        op["responses"] = {
            "200": {"description": "The page again, with what went wrong.", "content": HTML_PAGE},
            "302": REDIRECT,
            "400": {"description": "A forged or stale form: an error page.", "content": HTML_PAGE},
        }
    elif ep.name == "oauth-token":
        op["requestBody"] = _form("OAuthTokenRequest")
        op["security"] = CLIENT_AUTH
        op["responses"] = {
            "200": {"description": "Tokens.",
                    "content": {"application/json": {"schema": _ref("schemas", "OAuthToken")}}},
            "400": _oauth_error("invalid_request, invalid_grant, unsupported_grant_type, ..."),
            "401": _oauth_error("invalid_client"),
        }  # fmt: skip
    elif ep.name == "oauth-revoke":
        op["requestBody"] = _form("OAuthTokenHint")
        op["security"] = CLIENT_AUTH
        op["responses"] = {"200": {"description": "Revoked (or already unknown)."},
                           "400": _oauth_error("invalid_request"), "401": _oauth_error("invalid_client")}  # fmt: skip
    elif ep.name == "oauth-introspect":
        op["requestBody"] = _form("OAuthTokenHint")
        op["security"] = [{"oauthClientBasic": []}]
        op["responses"] = {
            "200": {"description": "Whether the token is active, and its claims.",
                    "content": {"application/json": {"schema": _ref("schemas", "OAuthIntrospection")}}},
            "401": _oauth_error("invalid_client"),
        }  # fmt: skip
    elif ep.name == "oauth-userinfo":
        op["security"] = [{"bearerAuth": []}]
        op["responses"] = {
            "200": {"description": "The claims the token's scope allows.",
                    "content": {"application/json": {"schema": _ref("schemas", "UserInfo")}}},
            "401": _oauth_error("invalid_token (with `WWW-Authenticate`)"),
            "403": _oauth_error("insufficient_scope: the token lacks `openid`"),
        }  # fmt: skip
    else:
        raise SystemExit(f"no OAuth operation for {ep.name}")
    return op


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
PAGE_RESPONSES = {  # (gateway route, method) → the statuses its page answers besides 200/303
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
    """The parent pages (auth service pages/): HTML, forms with a CSRF token, a 303 to sign in when signed out."""
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


def docs_operation(ep: R.Endpoint, _method: str) -> dict[str, Any]:
    if ep.served == "openapi":
        content = {"application/json": {"schema": {"type": "object", "description": "This document."}}}
    else:
        content = {"text/html": {"schema": {"type": "string"}}}
    return {
        "tags": ["Documentation"],
        "summary": ep.summary,
        "responses": {"200": {"description": "OK", "content": content}},
    }


def referenced_schemas(node: Any, schemas: dict[str, Any], seen: set[str] | None = None) -> set[str]:
    """Every component schema reachable from `node` through $refs."""
    seen = set() if seen is None else seen
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            name = ref.rsplit("/", 1)[1]
            if name not in seen and name in schemas:
                seen.add(name)
                referenced_schemas(schemas[name], schemas, seen)
        for value in node.values():
            referenced_schemas(value, schemas, seen)
    elif isinstance(node, list):
        for value in node:
            referenced_schemas(value, schemas, seen)
    return seen


def build(auth_doc: dict[str, Any] | None = None) -> dict[str, Any]:
    auth_doc = auth_doc if auth_doc is not None else auth_service_document()
    paths: dict[str, dict[str, Any]] = {}
    for ep in R.ENDPOINTS:
        for method in ep.methods:
            if ep.served:
                op = docs_operation(ep, method)
            elif ep.name.startswith("oauth-"):
                op = oauth_operation(ep, method)
            elif ep.name.startswith("parent-"):
                op = page_operation(ep, method)
            elif ep.service in ("auth", "rate-limiting"):
                op = auth_operation(auth_doc, ep, method)
            else:
                op = backend_operation(ep, method)
            paths.setdefault(gateway_path(ep), {})[method.lower()] = decorate(op, ep, method)
    all_schemas = {**auth_doc.get("components", {}).get("schemas", {}), **BACKEND_SCHEMAS, **OAUTH_SCHEMAS}
    all_schemas["Problem"] = PROBLEM
    responses = {}
    for _status, (name, description, headers) in ERRORS.items():
        hdrs = {"X-Request-Id": _ref("headers", "X-Request-Id")} | {h: _ref("headers", h) for h in headers}
        responses[name] = {"description": description, "headers": hdrs,
                           "content": {PROBLEM_MEDIA: {"schema": _ref("schemas", "Problem")}}}  # fmt: skip
    components = {"responses": responses, "headers": HEADERS, "schemas": all_schemas}
    used = referenced_schemas({"paths": paths, "responses": responses}, all_schemas)
    components["schemas"] = {k: all_schemas[k] for k in sorted(used)}
    components["securitySchemes"] = {
        "bearerAuth": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "An access token (RFC 9068 JWT) from login, refresh, child or device sign-in, or OAuth.",
        },
        "oauthClientBasic": {
            "type": "http",
            "scheme": "basic",
            "description": "A confidential OAuth client's id and secret (client_secret_basic).",
        },
        "oauth2": {
            "type": "oauth2",
            "description": "Third-party apps: authorization code with PKCE (S256); parents only.",
            "flows": {
                "authorizationCode": {
                    "authorizationUrl": "/oauth/authorize",
                    "tokenUrl": "/oauth/token",
                    "refreshUrl": "/oauth/token",
                    "scopes": {"openid": "Your account id", "profile": "Your display name", "email": "Your e-mail"},
                }
            },
        },
    }
    tags_in_use: list[str] = []
    for ops in paths.values():
        for op in ops.values():
            for tag in op.get("tags", []):
                if tag not in tags_in_use:
                    tags_in_use.append(tag)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "StoryVerse public API",
            "version": VERSION,
            "summary": "Bedtime stories for families: stories, characters, universes, generation and accounts.",
            "description": DESCRIPTION,
        },
        "servers": [{"url": "/", "description": "This gateway"}],
        "security": [{"bearerAuth": []}],
        "tags": [{"name": t} for t in tags_in_use],
        "paths": paths,
        "components": components,
    }


# -- the browsable page: static HTML, no script, nothing from elsewhere ---------------------------------------------

STYLE = """
body{font:15px/1.5 system-ui,sans-serif;margin:0 auto;max-width:980px;padding:1rem 1.5rem;color:#1d2330}
h1{margin-bottom:.2rem}h2{border-bottom:2px solid #dde;margin-top:2rem}code{background:#f3f3f8;padding:0 .25rem}
details{border:1px solid #dde;border-radius:6px;margin:.4rem 0;padding:.3rem .7rem}
summary{cursor:pointer}.m{display:inline-block;min-width:4.2rem;font-weight:700;font-family:monospace}
.GET{color:#1a6}.POST{color:#26c}.PUT,.PATCH{color:#a60}.DELETE{color:#c33}.pub{color:#777;font-size:.85em}
table{border-collapse:collapse;margin:.3rem 0}td,th{border:1px solid #e3e3ea;padding:.15rem .5rem;text-align:left}
pre{background:#f6f6fa;padding:.6rem;overflow:auto}
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _schema_rows(schema: dict[str, Any], schemas: dict[str, Any], depth: int = 0) -> list[tuple[str, str, bool]]:
    """(field, type, required) of an object schema, through $ref and allOf."""
    if depth > 4:
        return []
    if "$ref" in schema:
        return _schema_rows(schemas.get(schema["$ref"].rsplit("/", 1)[1], {}), schemas, depth + 1)
    rows: list[tuple[str, str, bool]] = []
    for part in schema.get("allOf", []):
        rows += _schema_rows(part, schemas, depth + 1)
    required = set(schema.get("required", []))
    for name, prop in (schema.get("properties") or {}).items():
        kind = prop.get("type") or ("ref: " + prop["$ref"].rsplit("/", 1)[1] if "$ref" in prop else "any")
        if kind == "array":
            items = prop.get("items", {})
            kind = "array of " + (items.get("type") or items.get("$ref", "any").rsplit("/", 1)[-1])
        if "enum" in prop:
            kind = " | ".join(map(str, prop["enum"]))
        rows.append((name, str(kind), name in required))
    return rows


def render_html(doc: dict[str, Any]) -> str:
    schemas = doc["components"]["schemas"]
    by_tag: dict[str, list[tuple[str, str, dict]]] = {t["name"]: [] for t in doc["tags"]}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            by_tag[op["tags"][0]].append((method.upper(), path, op))
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(doc['info']['title'])}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{_e(doc['info']['title'])} <small>{_e(doc['info']['version'])}</small></h1>",
        f"<p>{_e(doc['info']['summary'])} The machine-readable document: "
        '<a href="openapi.json">openapi.json</a> (OpenAPI 3.1).</p>',
    ]
    for para in doc["info"]["description"].split("\n\n"):
        text = _e(para.replace("\n", " "))
        text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
        out.append("<p>" + re.sub(r"`(.+?)`", r"<code>\1</code>", text) + "</p>")
    out.append("<nav><p>" + " · ".join(f'<a href="#{_e(t)}">{_e(t)}</a>' for t in by_tag) + "</p></nav>")
    for tag, ops in by_tag.items():
        out.append(f'<h2 id="{_e(tag)}">{_e(tag)}</h2>')
        for method, path, op in ops:
            public = op.get("security") == [] or (op.get("security") and {} in op["security"])
            badge = '<span class="pub">public</span>' if public else ""
            out.append(
                f'<details id="{_e(op["operationId"])}"><summary><span class="m {method}">{method}</span> '
                f"<code>{_e(path)}</code> {_e(op.get('summary', ''))} {badge}</summary>"
            )
            out.append("<p>" + _e(op.get("description", "")).replace("\n\n", "</p><p>") + "</p>")
            params = op.get("parameters", [])
            if params:
                out.append("<table><tr><th>parameter</th><th>in</th><th>required</th></tr>")
                out += [
                    f"<tr><td><code>{_e(p['name'])}</code></td><td>{_e(p['in'])}</td>"
                    f"<td>{'yes' if p.get('required') else 'no'}</td></tr>"
                    for p in params
                ]
                out.append("</table>")
            body = op.get("requestBody", {}).get("content", {})
            for media, spec in body.items():
                rows = _schema_rows(spec.get("schema", {}), schemas)
                out.append(f"<p>Request body (<code>{_e(media)}</code>):</p>")
                out.append("<table><tr><th>field</th><th>type</th><th>required</th></tr>")
                out += [
                    f"<tr><td><code>{_e(n)}</code></td><td>{_e(t)}</td><td>{'yes' if r else ''}</td></tr>"
                    for n, t, r in rows
                ]
                out.append("</table>")
            out.append("<table><tr><th>status</th><th>meaning</th></tr>")
            responses = doc["components"]["responses"]
            for status, resp in op["responses"].items():
                if "$ref" in resp:
                    resp = responses[resp["$ref"].rsplit("/", 1)[1]]
                out.append(f"<tr><td>{_e(status)}</td><td>{_e(resp.get('description', ''))}</td></tr>")
            out.append("</table></details>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def render_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/openapi/ is out of date")
    args = parser.parse_args(argv)
    doc = build()
    wanted = {OPENAPI_JSON: render_json(doc), DOCS_HTML: render_html(doc)}
    if args.check:
        stale = [p for p, text in wanted.items() if not p.exists() or p.read_text() != text]
        for path in stale:
            print(f"{path} is out of date: run .venv/bin/python scripts/gen_openapi.py", file=sys.stderr)
        return 1 if stale else 0
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for path, text in wanted.items():
        path.write_text(text)
    print(f"wrote {OPENAPI_JSON} and {DOCS_HTML}: run scripts/gen_kong_yml.py next (the docs CSP hash)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
