"""The OpenAPI document's fixed parts: the backends' contract schemas (stories, characters, universes, generation),
RFC 9457 problem documents, OAuth's schemas, the gateway's headers and error responses, the API's description."""

from __future__ import annotations

from typing import Any

VERSION = "v1"
PROBLEM_MEDIA = "application/problem+json"

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
            "title": {"type": "string", "minLength": 1, "maxLength": 200, "examples": ["The Sleepy Dragon"]},
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
            "name": {"type": "string", "minLength": 1, "maxLength": 100, "examples": ["Pip the fox"]},
            "description": {"type": "string"},
            "universe_id": ID,
        },
        ["name"],
    ),
    "Character": {"allOf": [{"$ref": "#/components/schemas/CharacterIn"}, _obj({"id": ID}, ["id"])]},
    "UniverseIn": _obj(
        {
            "name": {"type": "string", "minLength": 1, "maxLength": 100, "examples": ["The Moonlit Forest"]},
            "description": {"type": "string"},
        },
        ["name"],
    ),
    "Universe": {"allOf": [{"$ref": "#/components/schemas/UniverseIn"}, _obj({"id": ID}, ["id"])]},
    "GenerationIn": _obj(
        {
            "prompt": {
                "type": "string",
                "minLength": 1,
                "maxLength": 2000,
                "examples": ["A dragon who is afraid of the dark"],
            },
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
