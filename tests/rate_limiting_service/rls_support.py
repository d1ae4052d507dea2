"""Helpers for the rate limiting service's tests (a plain module: conftest.py is not importable by name)."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from pathlib import Path

import jwt
import psycopg2
from cryptography.hazmat.primitives.asymmetric import rsa

REPO = Path(__file__).resolve().parents[2]
ISSUER, AUDIENCE, KID = "http://rls.storyverse.test", "storyverse-api", "rls-test-key"


def recreate_database(name: str) -> str:
    conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"


class Signer:
    """Mints access tokens as the auth service does (RS256, typ at+jwt, kid) and publishes the JWKS."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        self.jwks = {"keys": [public | {"kid": KID, "alg": "RS256", "use": "sig"}]}

    def token(self, claims: dict, **header) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600} | claims
        headers = {"kid": KID, "typ": "at+jwt"} | header
        return jwt.encode(body, self.key, algorithm="RS256", headers=headers)

    def bearer(self, claims: dict, **header) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(claims, **header)}"}


def add_family(conn, tier: str = "basic", tz: str = "UTC") -> str:
    family_id = str(uuid.uuid4())
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO families (id, name, time_zone, tier, created_at, family_code) VALUES (%s, %s, %s, %s, %s, %s)",
            (family_id, "The Testers", tz, tier, dt.datetime.now(dt.UTC), uuid.uuid4().hex[:12].upper()),
        )
    conn.commit()
    return family_id


def add_account(conn, family_id: str, role: str, name: str = "Someone", limit: int | None = None) -> str:
    account_id = str(uuid.uuid4())
    email = f"{account_id}@example.com" if role != "child" else None
    username = name.lower() if role == "child" else None
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO accounts (id, family_id, email, role, display_name, created_at, username, daily_story_limit)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (account_id, family_id, email, role, name, dt.datetime.now(dt.UTC), username, limit),
        )
    conn.commit()
    return account_id
