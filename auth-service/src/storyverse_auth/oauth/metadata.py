"""The provider metadata (OpenID Connect Discovery 1.0 / RFC 8414): exactly what the endpoints support.

tests/auth_service/test_auth_oauth_discovery.py checks every entry against the running endpoints.
"""

from __future__ import annotations

from typing import Any

from ..tokens.signing import ID_TOKEN_ALGORITHM
from .scopes import SCOPES
from .server import ALL_METHODS, SECRET_METHODS


def provider_metadata(issuer: str) -> dict[str, Any]:
    base = issuer.rstrip("/")
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{base}/oauth/authorize",
        "token_endpoint": f"{base}/oauth/token",
        "userinfo_endpoint": f"{base}/oauth/userinfo",
        "revocation_endpoint": f"{base}/oauth/revoke",
        "introspection_endpoint": f"{base}/oauth/introspect",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "scopes_supported": list(SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": list(ALL_METHODS),
        "revocation_endpoint_auth_methods_supported": list(ALL_METHODS),
        "introspection_endpoint_auth_methods_supported": list(SECRET_METHODS),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [ID_TOKEN_ALGORITHM],  # oauth/issue.py id_token
        "claims_supported": [
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "at_hash",
            "name",
            "email",
            "email_verified",
        ],
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "claims_parameter_supported": False,
        "authorization_response_iss_parameter_supported": True,  # RFC 9207 (oauth/server.py handle_response)
    }
