"""Discovery: the JWKS and the discovery document (routes)."""
