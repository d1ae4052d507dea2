"""JWKS (public members only) and the discovery document."""

from __future__ import annotations

from apiflask import APIBlueprint
from flask import current_app, url_for

from ..extensions import db
from ..oauth.metadata import provider_metadata
from ..tokens import signing

bp = APIBlueprint("wellknown", __name__, url_prefix="/.well-known", tag="Discovery")

_JWKS_DOC = {
    200: {
        "description": "The JSON Web Key Set: next, active and recently retired public keys.",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["keys"],
                    "properties": {"keys": {"type": "array", "items": {"type": "object"}}},
                }
            }
        },
    }
}
_DISCOVERY_DOC = {
    200: {
        "description": "OpenID Provider / RFC 8414 metadata.",
        "content": {"application/json": {"schema": {"type": "object", "required": ["issuer", "jwks_uri"]}}},
    }
}


@bp.get("/jwks.json")
@bp.doc(summary="JSON Web Key Set", responses=_JWKS_DOC)
def jwks():
    body = signing.jwks()
    if not set(signing.signing_algorithms()) <= {key["alg"] for key in body["keys"]}:
        # first start, or the first after an upgrade or a JWT_ALGORITHM change: publish the missing keys
        signing.ensure_keys()
        db.session.commit()
        body = signing.jwks()
    max_age = current_app.config["JWKS_MAX_AGE"]
    return body, 200, {"Cache-Control": f"public, max-age={max_age}"}


@bp.get("/openid-configuration")
@bp.doc(summary="Discovery document", responses=_DISCOVERY_DOC)
def openid_configuration():
    issuer = current_app.config["ISSUER"]
    # Exactly what the OAuth 2.1 / OIDC endpoints support (oauth/metadata.py; ID tokens: RS256 only). Access tokens:
    # the algorithms of the published keys that sign them (tokens/signing.py access_token_algorithms). The
    # first-party /api/auth/login is not an OAuth endpoint and is not advertised (no password grant, no implicit flow:
    # RFC 9700).
    return (
        {
            **provider_metadata(issuer),
            "access_token_signing_alg_values_supported": signing.access_token_algorithms(),
            "service_documentation": f"{issuer.rstrip('/')}{url_for('openapi.docs')}",
        },
        200,
        {"Cache-Control": "public, max-age=300"},
    )
