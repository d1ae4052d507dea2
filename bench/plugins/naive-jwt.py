#!/usr/bin/env python3
"""Benchmark yardstick: a NAÏVE sv-jwt, the way a first Python plugin is usually written. Never deploy this.

Same job as sv-jwt on the happy path (verify an RS256 access token from a JWKS, check the jti and sid denylist
keys, strip client identity headers, set the verified identity upstream and in kong.ctx.shared), but:
one PDK call per header read, a full PyJWT verification on every request (PyJWKClient keeps the JWKS, nothing
keeps verified tokens), one Redis round trip per denylist key, separate clear_header / set_header calls.
"""

import json

import jwt
import redis
from storyverse_contracts.keys import revoked_jti_key, revoked_sid_key

Schema = (
    {"jwks_url": {"type": "string", "required": True}},
    {"issuer": {"type": "string", "required": True}},
    {"audience": {"type": "string", "required": True}},
    {"redis_database": {"type": "integer", "default": 0, "required": True}},
    {"redis_port": {"type": "integer", "default": 6379, "required": True}},
)
version = "0.1.0"
priority = 1450

IDENTITY = {
    "sub": "X-User-Id",
    "role": "X-User-Role",
    "family_id": "X-Family-Id",
    "tier": "X-Account-Tier",
    "content_rating": "X-Content-Rating",
}

_clients = {}


class Plugin:
    def __init__(self, config):
        self.config = config
        self.jwks = jwt.PyJWKClient(config["jwks_url"])
        where = (config.get("redis_port") or 6379, config.get("redis_database") or 0)
        if where not in _clients:
            _clients[where] = redis.Redis(port=where[0], db=where[1], socket_timeout=0.1)
        self.redis = _clients[where]

    def access(self, kong):
        try:
            self._access(kong)
        except Exception:  # noqa: BLE001 (the yardstick still fails closed)
            kong.response.exit(500, json.dumps({"status": 500}), {"Content-Type": "application/problem+json"})

    def _access(self, kong):
        auth = kong.request.get_header("authorization")
        for name in IDENTITY.values():  # one round trip per header: "is the client spoofing this one?"
            kong.request.get_header(name)
        if not auth or not auth.lower().startswith("bearer "):
            return kong.response.exit(401, json.dumps({"status": 401}), {"Content-Type": "application/problem+json"})
        token = auth[7:]
        try:
            key = self.jwks.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=["RS256"],
                audience=self.config["audience"],
                issuer=self.config["issuer"],
                options={"require": ["exp", "iat", "nbf", "jti", "sub"]},
            )
        except jwt.PyJWTError:
            return kong.response.exit(401, json.dumps({"status": 401}), {"Content-Type": "application/problem+json"})
        sid = claims.get("sid")  # the auth service's keys (storyverse_contracts.keys), one call per key
        if self.redis.exists(revoked_jti_key(claims["jti"], sid)) or (sid and self.redis.exists(revoked_sid_key(sid))):
            return kong.response.exit(401, json.dumps({"status": 401}), {"Content-Type": "application/problem+json"})
        for name in IDENTITY.values():
            kong.service.request.clear_header(name)
        for claim, name in IDENTITY.items():
            if claims.get(claim) is not None:
                kong.service.request.set_header(name, str(claims[claim]))
        kong.ctx.shared.set("sv_identity", {"authenticated": True, "sub": claims["sub"], "role": claims.get("role")})


if __name__ == "__main__":
    from kong_pdk.cli import start_dedicated_server

    start_dedicated_server("naive-jwt", Plugin, version, priority, Schema)
