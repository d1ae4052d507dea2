"""Pure access-token verification (RFC 9068 / RFC 8725): no PDK, no I/O, the clock is an argument.

``verify(token, keys, cfg, now)`` returns ``Verified`` or a typed ``Failure``. The failure's ``detail`` is for logs
only; what reaches the client is ``Failure.public`` ("token expired" or "invalid token").

Order of checks (cheap and attacker-independent first, the signature before any claim is trusted):
size → shape → header (forbidden members, ``alg``, ``typ``, ``kid`` syntax) → key lookup by ``kid`` (a dict lookup,
never a path, query or command) → algorithm pinned to that key's type → signature + ``iss``/``aud``/required claims
(PyJWT, ``algorithms=[alg]``) → times against ``now`` with a bounded leeway → claim types.
"""

from __future__ import annotations

import base64
import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from storyverse_contracts import identity, tiers

MAX_TOKEN_BYTES = 8192
MAX_LEEWAY_SECONDS = 60

# The algorithms a key of each type may verify; HS* and "none" are never in any list.
ALGORITHMS_BY_KEY_TYPE: dict[str, frozenset[str]] = {
    "RSA": frozenset({"RS256", "PS256"}),
    "EC": frozenset({"ES256"}),
    "OKP": frozenset({"EdDSA"}),
}
SUPPORTED_ALGORITHMS = frozenset().union(*ALGORITHMS_BY_KEY_TYPE.values())

ACCEPTED_TYP = frozenset({"at+jwt", "application/at+jwt"})  # RFC 9068 §2.1, compared case-insensitively
# Header members that make a verifier fetch or trust attacker-chosen keys, or change how the token is processed.
FORBIDDEN_HEADER_MEMBERS = frozenset({"crit", "jku", "x5u", "jwk", "x5c", "b64", "zip", "enc"})

REQUIRED_CLAIMS = ("iss", "aud", "sub", "exp", "iat", "nbf", "jti", "role", "family_id", "tier")
CHILD_REQUIRED_CLAIMS = ("age_band", "content_rating")
ROLES = frozenset(identity.ROLES)
# Family tiers, plus the metering plans of API-key tokens (auth service apikeys: tier = plan, metered by sv-quota)
TIERS = frozenset(tiers.TIERS)
# String claims that travel on as header values or Redis keys: printable ASCII, no spaces, bounded.
STRING_CLAIMS = ("sub", "jti", "family_id", "role", "tier", "tz", "age_band", "content_rating", "sid", "scope")

KID_PATTERN = re.compile(r"\A[A-Za-z0-9_.~-]{1,128}\Z")  # no "/", quotes, spaces, "|", ";"...
_SAFE_VALUE = re.compile(r"\A[\x21-\x7e]{1,128}\Z")
_SAFE_SCOPE = re.compile(r"\A[\x21-\x7e]+( [\x21-\x7e]+)*\Z")
_B64URL = re.compile(r"\A[A-Za-z0-9_-]+\Z")


class Reason(enum.Enum):
    """Why a token was refused (logs and metrics; never sent to the client)."""

    TOO_LARGE = "too_large"
    MALFORMED = "malformed"
    FORBIDDEN_HEADER = "forbidden_header"
    BAD_ALGORITHM = "bad_algorithm"
    BAD_TYPE = "bad_type"
    BAD_KID = "bad_kid"
    UNKNOWN_KID = "unknown_kid"
    BAD_SIGNATURE = "bad_signature"
    BAD_ISSUER = "bad_issuer"
    BAD_AUDIENCE = "bad_audience"
    MISSING_CLAIM = "missing_claim"
    BAD_CLAIM = "bad_claim"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    ISSUED_IN_FUTURE = "issued_in_future"
    REVOKED = "revoked"


@dataclass(frozen=True)
class VerifyConfig:
    issuer: str
    audience: str
    algorithms: frozenset[str] = frozenset({"RS256", "ES256", "EdDSA"})
    leeway: int = 30

    def __post_init__(self) -> None:
        if not self.issuer or not self.audience:
            raise ValueError("issuer and audience are required")
        if not self.algorithms or not self.algorithms <= SUPPORTED_ALGORITHMS:
            raise ValueError(f"algorithms must be a non-empty subset of {sorted(SUPPORTED_ALGORITHMS)}")
        if not 0 <= self.leeway <= MAX_LEEWAY_SECONDS:
            raise ValueError(f"leeway must be between 0 and {MAX_LEEWAY_SECONDS} seconds")


@dataclass(frozen=True)
class PublicKey:
    """A verification key from the JWKS: a typed ``cryptography`` object and the algorithms it may verify."""

    kid: str
    kty: str
    key: Any = field(repr=False)
    algorithms: frozenset[str]


@dataclass(frozen=True)
class Verified:
    claims: Mapping[str, Any]
    kid: str
    alg: str

    @property
    def exp(self) -> float:
        return float(self.claims["exp"])


@dataclass(frozen=True)
class Failure:
    reason: Reason
    detail: str  # for logs only: fixed text plus sanitised values, never the token
    kid: str | None = None  # set for UNKNOWN_KID, so the caller can refetch the JWKS (rate-limited)

    @property
    def public(self) -> str:
        return "token expired" if self.reason is Reason.EXPIRED else "invalid token"


Result = Verified | Failure


def verify(token: str, keys: Mapping[str, PublicKey], cfg: VerifyConfig, now: float) -> Result:
    """Verify ``token`` against ``keys`` (kid → key) and ``cfg`` at time ``now`` (seconds since the epoch)."""
    shape = _check_shape(token)
    if shape is not None:
        return shape
    header = _parse_header(token.split(".", 1)[0])
    if header is None:
        return Failure(Reason.MALFORMED, "header is not a base64url JSON object")
    checked = _check_header(header, keys, cfg)
    if isinstance(checked, Failure):
        return checked
    key, alg = checked
    try:
        claims = jwt.decode(
            token,
            key.key,
            algorithms=[alg],  # pinned: the one algorithm this key's type allows and the header asked for
            audience=cfg.audience,
            issuer=cfg.issuer,
            # Times are checked below against the injected clock, not PyJWT's.
            options={
                "require": list(REQUIRED_CLAIMS),
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except jwt.InvalidTokenError as exc:
        return _decode_failure(exc)
    failure = _check_times(claims, cfg.leeway, now) or _check_claims(claims)
    return failure or Verified(claims, key.kid, alg)


def _check_shape(token: str) -> Failure | None:
    if not isinstance(token, str) or not token:
        return Failure(Reason.MALFORMED, "empty token")
    if len(token) > MAX_TOKEN_BYTES or not token.isascii():
        return Failure(Reason.TOO_LARGE if len(token) > MAX_TOKEN_BYTES else Reason.MALFORMED, "size or charset")
    parts = token.split(".")
    if len(parts) != 3 or not all(_B64URL.match(p) for p in parts):
        return Failure(Reason.MALFORMED, f"expected 3 base64url segments, got {len(parts)}")
    return None


def _parse_header(segment: str) -> dict[str, Any] | None:
    """Our own parse, so every header check below runs before PyJWT looks at the token."""
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, RecursionError):  # binascii.Error, UnicodeDecodeError, JSONDecodeError are ValueErrors
        return None
    return header if isinstance(header, dict) else None


def _check_header(header: dict[str, Any], keys: Mapping[str, PublicKey], cfg: VerifyConfig) -> Failure | tuple:
    forbidden = FORBIDDEN_HEADER_MEMBERS.intersection(header)
    if forbidden:
        return Failure(Reason.FORBIDDEN_HEADER, f"forbidden header members {sorted(forbidden)}")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in cfg.algorithms:
        return Failure(Reason.BAD_ALGORITHM, f"alg {_safe(alg)} not allowed")
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in ACCEPTED_TYP:
        return Failure(Reason.BAD_TYPE, f"typ {_safe(typ)} is not at+jwt")
    kid = header.get("kid")
    if not isinstance(kid, str) or not KID_PATTERN.match(kid):
        return Failure(Reason.BAD_KID, f"kid {_safe(kid)} is not well-formed")
    key = keys.get(kid)
    if key is None:
        return Failure(Reason.UNKNOWN_KID, f"kid {kid} is not in the key set", kid=kid)
    if alg not in key.algorithms:
        return Failure(Reason.BAD_ALGORITHM, f"alg {alg} not allowed for {key.kty} key {kid}")
    return key, alg


_DECODE_REASONS: tuple[tuple[type[Exception], Reason], ...] = (
    (jwt.ExpiredSignatureError, Reason.EXPIRED),
    (jwt.ImmatureSignatureError, Reason.NOT_YET_VALID),
    (jwt.InvalidSignatureError, Reason.BAD_SIGNATURE),
    (jwt.InvalidAudienceError, Reason.BAD_AUDIENCE),
    (jwt.InvalidIssuerError, Reason.BAD_ISSUER),
    (jwt.MissingRequiredClaimError, Reason.MISSING_CLAIM),
    (jwt.InvalidAlgorithmError, Reason.BAD_ALGORITHM),
    (jwt.DecodeError, Reason.MALFORMED),
)


def _decode_failure(exc: jwt.InvalidTokenError) -> Failure:
    for exc_type, reason in _DECODE_REASONS:
        if isinstance(exc, exc_type):
            return Failure(reason, type(exc).__name__)
    return Failure(Reason.BAD_CLAIM, type(exc).__name__)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_times(claims: Mapping[str, Any], leeway: int, now: float) -> Failure | None:
    exp, nbf, iat = claims["exp"], claims["nbf"], claims["iat"]
    if not (_number(exp) and _number(nbf) and _number(iat)):
        return Failure(Reason.BAD_CLAIM, "exp, nbf and iat must be numbers")
    if now >= exp + leeway:
        return Failure(Reason.EXPIRED, "exp is in the past")
    if nbf > now + leeway:
        return Failure(Reason.NOT_YET_VALID, "nbf is in the future")
    if iat > now + leeway:
        return Failure(Reason.ISSUED_IN_FUTURE, "iat is in the future")
    return None


def _check_claims(claims: Mapping[str, Any]) -> Failure | None:
    for name in STRING_CLAIMS:
        value = claims.get(name)
        pattern = _SAFE_SCOPE if name == "scope" else _SAFE_VALUE
        if value is not None and not (isinstance(value, str) and pattern.match(value)):
            return Failure(Reason.BAD_CLAIM, f"claim {name} is not a safe string")
    if claims["role"] not in ROLES:
        return Failure(Reason.BAD_CLAIM, f"role {_safe(claims['role'])} unknown")
    if claims["tier"] not in TIERS:
        return Failure(Reason.BAD_CLAIM, f"tier {_safe(claims['tier'])} unknown")
    if claims["role"] == "child":
        missing = [name for name in CHILD_REQUIRED_CLAIMS if claims.get(name) is None]
        if missing:
            return Failure(Reason.MISSING_CLAIM, f"child token without {missing}")
    return None


def _safe(value: Any) -> str:
    """A log-safe rendering of an attacker-controlled value."""
    return repr(value)[:64]
