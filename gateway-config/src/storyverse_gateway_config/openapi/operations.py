"""One OpenAPI operation per routed method: the auth and rate limiting services' from their own served documents,
the backends' from the contract schemas, OAuth's and the docs endpoints' written here; `decorate` adds the gateway's
part (security, path parameters, limits, headers, error responses, `x-storyverse-*` extensions)."""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

from storyverse_gateway_config import routes as R
from storyverse_gateway_config.openapi.schemas import BACKEND_OPS, ERRORS, GATEWAY_ERRORS, PROBLEM_MEDIA, TAGS, VERSION

PARAM = re.compile(r"\(\?<(\w+)>([^)]*)\)")

# -- the auth service's own document ------------------------------------------------------------------------------


def auth_service_document() -> dict[str, Any]:
    """The auth service's served /openapi.json, in-process (its app factory and Flask's test client)."""
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


def ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _success_headers(ep: R.Endpoint) -> dict[str, Any]:
    names = ["X-Request-Id", "RateLimit", "RateLimit-Policy"]
    if ep.daily_quota:
        names += ["X-Quota-Limit", "X-Quota-Remaining", "X-Quota-Reset"]
    if ep.cache:
        names.append("X-Cache-Status")
    return {n: ref("headers", n) for n in names}


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
            responses[status] = ref("responses", ERRORS[status][0])
    if ep.service == "auth" and not ep.served:  # the auth service's input guard: malformed input is a 400 problem
        bad = responses.setdefault("400", {"description": ERRORS["400"][1]})
        if ep.protocol_errors and "$ref" not in bad:
            bad.setdefault("content", {})[PROBLEM_MEDIA] = {"schema": ref("schemas", "Problem")}
    for status, response in responses.items():  # the service's own errors, in the one format, keep their meaning
        if status[0] in "45" and "$ref" not in response and not ep.protocol_errors:
            extra = ERRORS[status][2] if status in ERRORS else ()
            response["description"] = response.get("description") or ERRORS[status][1]
            response["headers"] = {h: ref("headers", h) for h in ("X-Request-Id", *extra)}
            response["content"] = {PROBLEM_MEDIA: {"schema": ref("schemas", "Problem")}}
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
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref("schemas", request)}}}
        op["responses"] = {"400": {}, "415": {}, "422": {}}
    else:
        op["responses"] = {"400": {}} if ep.name == "stories-get" else {}  # sv-expand: an unknown ?expand= name
    if response:
        content = {"application/json": {"schema": ref("schemas", response)}}
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
    return {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": ref("schemas", schema)}}}


def _oauth_error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ref("schemas", "OAuthError")}}}


HTML_PAGE: dict[str, Any] = {"text/html": {"schema": {"type": "string"}}}
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
                    "content": {"application/json": {"schema": ref("schemas", "OAuthToken")}}},
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
                    "content": {"application/json": {"schema": ref("schemas", "OAuthIntrospection")}}},
            "401": _oauth_error("invalid_client"),
        }  # fmt: skip
    elif ep.name == "oauth-userinfo":
        op["security"] = [{"bearerAuth": []}]
        op["responses"] = {
            "200": {"description": "The claims the token's scope allows.",
                    "content": {"application/json": {"schema": ref("schemas", "UserInfo")}}},
            "401": _oauth_error("invalid_token (with `WWW-Authenticate`)"),
            "403": _oauth_error("insufficient_scope: the token lacks `openid`"),
        }  # fmt: skip
    else:
        raise SystemExit(f"no OAuth operation for {ep.name}")
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
