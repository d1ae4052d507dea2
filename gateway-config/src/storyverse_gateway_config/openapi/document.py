"""The OpenAPI 3.1 document of everything the gateway routes (one operation per routed method)."""

from __future__ import annotations

import json
from typing import Any

from storyverse_gateway_config import routes as R
from storyverse_gateway_config.openapi.operations import (
    auth_operation,
    auth_service_document,
    backend_operation,
    decorate,
    docs_operation,
    gateway_path,
    oauth_operation,
    ref,
)
from storyverse_gateway_config.openapi.schemas import (
    BACKEND_SCHEMAS,
    DESCRIPTION,
    ERRORS,
    HEADERS,
    OAUTH_SCHEMAS,
    PROBLEM,
    PROBLEM_MEDIA,
    VERSION,
)


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


SECURITY_SCHEMES: dict[str, Any] = {
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


def operation(auth_doc: dict[str, Any], ep: R.Endpoint, method: str) -> dict[str, Any]:
    """The operation for one routed method, from where its contract lives, with the gateway's part added."""
    if ep.served:
        op = docs_operation(ep, method)
    elif ep.name.startswith("oauth-"):
        op = oauth_operation(ep, method)
    elif ep.service in ("auth", "rate-limiting"):
        op = auth_operation(auth_doc, ep, method)
    else:
        op = backend_operation(ep, method)
    return decorate(op, ep, method)


def error_responses() -> dict[str, Any]:
    """components.responses: one per error status, an RFC 9457 problem document with its headers."""
    responses = {}
    for _status, (name, description, headers) in ERRORS.items():
        hdrs = {"X-Request-Id": ref("headers", "X-Request-Id")} | {h: ref("headers", h) for h in headers}
        responses[name] = {"description": description, "headers": hdrs,
                           "content": {PROBLEM_MEDIA: {"schema": ref("schemas", "Problem")}}}  # fmt: skip
    return responses


def components(auth_doc: dict[str, Any], paths: dict[str, Any]) -> dict[str, Any]:
    """Error responses, headers, the schemas the paths reach (sorted) and the security schemes."""
    all_schemas = {**auth_doc.get("components", {}).get("schemas", {}), **BACKEND_SCHEMAS, **OAUTH_SCHEMAS}
    all_schemas["Problem"] = PROBLEM
    responses = error_responses()
    used = referenced_schemas({"paths": paths, "responses": responses}, all_schemas)
    return {
        "responses": responses,
        "headers": HEADERS,
        "schemas": {k: all_schemas[k] for k in sorted(used)},
        "securitySchemes": SECURITY_SCHEMES,
    }


def tags_in_use(paths: dict[str, Any]) -> list[str]:
    tags: list[str] = []
    for ops in paths.values():
        for op in ops.values():
            for tag in op.get("tags", []):
                if tag not in tags:
                    tags.append(tag)
    return tags


def build(auth_doc: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole document; `auth_doc` (the auth and rate limiting services' own documents) is fetched if not given."""
    auth_doc = auth_doc if auth_doc is not None else auth_service_document()
    paths: dict[str, dict[str, Any]] = {}
    for ep in R.ENDPOINTS:
        for method in ep.methods:
            paths.setdefault(gateway_path(ep), {})[method.lower()] = operation(auth_doc, ep, method)
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
        "tags": [{"name": t} for t in tags_in_use(paths)],
        "paths": paths,
        "components": components(auth_doc, paths),
    }


def render_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
