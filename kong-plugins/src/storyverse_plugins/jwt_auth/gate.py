"""sv-jwt's decision: request headers in, ``Verdict`` (Allow/Deny + a log line) out. No PDK calls.

The gate owns the order of things: refuse requests whose headers may have been truncated, find client-sent
identity headers to strip, extract the bearer token, verify it (verified-token cache first, then ``tokens.verify``
with one rate-limited JWKS refetch on an unknown kid), check the denylist (jti and sid: an in-process answer while
Redis pushes revocations, else one Redis read; also on cache hits), and build what goes upstream and into
``kong.ctx.shared``.

``Allow.upstream_headers`` follows ``kong.service.request.set_headers`` semantics: a string sets the header
(replacing every client copy), an empty list ``[]`` removes it.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from storyverse_contracts.errors import INVALID_TOKEN, TOKEN_EXPIRED
from storyverse_contracts.identity import IDENTITY_HEADERS

from storyverse_plugins.common.decision import Allow, Decision, Deny
from storyverse_plugins.common.identity import SHARED_IDENTITY
from storyverse_plugins.common.redis_pool import RedisSettings, get_client
from storyverse_plugins.jwt_auth.cache import CachedToken, TokenCache, token_digest
from storyverse_plugins.jwt_auth.denylist import (
    Denylist,
    DenylistUnavailable,
    NoDenylist,
    RedisDenylist,
    RevocationWatch,
)
from storyverse_plugins.jwt_auth.jwks import JwksCache, JwksUnavailable, http_fetcher
from storyverse_plugins.jwt_auth.schema import Config
from storyverse_plugins.jwt_auth.tokens import Failure, Reason, Verified, verify

MAX_SPOOFED_HEADERS = 16  # more client-sent identity headers than this is an attack, not a mistake
MAX_KNOWN_NAMES = 4096  # header names whose verdict is remembered (random names beyond it are checked each time)
RETRY_AFTER_SECONDS = "5"
IDENTITY_CLAIMS = ("sub", "role", "family_id", "tier", "tz", "age_band", "content_rating", "jti", "scope", "sid")
# Parental controls and family membership, for sv-rbac (children, hours, ratings, features) and sv-quota
# (daily_story_limit). Signed by the auth service; still only forwarded when they have the expected shape.
CONTROL_CLAIMS = {
    "children": "str_list",
    "features": "str_list",
    "allowed_hours": "str_or_list",
    "max_content_rating": "str",
    "daily_story_limit": "int",
}
MAX_LIST_CLAIM = 64
_REQUEST_ID = re.compile(r"\A[A-Za-z0-9._:-]{8,128}\Z")
_IDENTITY_NAMES = frozenset(name.lower() for name in IDENTITY_HEADERS.values())


_verdict = tuple.__new__  # builds a Verdict from its four fields without NamedTuple's Python-level __new__


class Verdict(NamedTuple):
    """Immutable like a frozen dataclass, but built at tuple speed: one is made per request."""

    decision: Decision
    log: str | None = None  # for the log only, never sent to the client
    log_level: str = "info"  # "error" lines also go to Kong's error log (kong.log.err)
    request_id: str | None = None  # echoed in problem documents


# --- pure helpers ----------------------------------------------------------------------------------------------


def _values(value: Any) -> list[str]:
    """A get_headers() value: a list after Kong's fix_mmap (a bare string in hand-written fakes)."""
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return [value] if isinstance(value, str) else []


def is_identity_header(name: str, prefixes: tuple[str, ...]) -> bool:
    """Is this client header one only the gateway may set?

    ``_`` counts as ``-``: several backends (WSGI's ``HTTP_X_USER_ID``) read ``X_User_Id`` as ``X-User-Id``.
    ``prefixes`` are lower-case with ``-`` (see ``Gate``).
    """
    norm = name.lower().replace("_", "-")
    return norm in _IDENTITY_NAMES or norm.startswith(prefixes)


def bearer_token(values: list[str]) -> str | Failure | None:
    """The bearer token; None when there is none (no header, or another scheme); Failure when malformed."""
    if not values:
        return None
    if len(values) == 1 and values[0].startswith("Bearer "):  # the usual shape: same checks, fewer copies
        token = values[0][7:]
        if token and " " not in token and token.isascii() and not (token[0].isspace() or token[-1].isspace()):
            return token
    if len(values) > 1:
        return Failure(Reason.MALFORMED, "more than one Authorization header")
    scheme, _, token = values[0].strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    if not token or " " in token:
        return Failure(Reason.MALFORMED, "empty or spaced bearer token")
    if not token.isascii():  # non-UTF-8 bytes arrive surrogate-escaped (kong_pluginserver): never hashed or decoded
        return Failure(Reason.MALFORMED, "non-ASCII bearer token")
    return token


def _shaped(value: Any, shape: str) -> bool:
    """Does a control claim have the shape downstream plugins expect? (Anything else is left out.)"""
    if shape == "str":
        return isinstance(value, str) and len(value) <= 64
    if shape == "int":
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 1000
    if shape == "str_or_list" and isinstance(value, str):
        return len(value) <= 64
    return (
        isinstance(value, list)
        and len(value) <= MAX_LIST_CLAIM
        and all(isinstance(v, str) and len(v) <= 128 for v in value)
    )


def identity_of(claims: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """(the kong.ctx.shared identity, the upstream identity headers) of verified claims."""
    identity: dict[str, Any] = {"authenticated": True, "exp": int(claims["exp"])}
    identity.update({name: claims[name] for name in IDENTITY_CLAIMS if claims.get(name) is not None})
    identity.update({name: claims[name] for name, shape in CONTROL_CLAIMS.items() if _shaped(claims.get(name), shape)})
    headers = {header: claims[claim] for claim, header in IDENTITY_HEADERS.items() if claims.get(claim) is not None}
    return identity, headers


# --- responses ---------------------------------------------------------------------------------------------------


def _challenge(realm: str, error: str | None = None, description: str | None = None) -> dict[str, str]:
    value = f'Bearer realm="{realm}"'
    if error:
        value += f', error="{error}"'
    if description:
        value += f', error_description="{description}"'
    return {"WWW-Authenticate": value}


def missing_token(realm: str) -> Deny:
    return Deny(401, INVALID_TOKEN, "A valid bearer access token is required.", _challenge(realm))


def rejected_token(realm: str, failure: Failure) -> Deny:
    if failure.reason is Reason.EXPIRED:
        return Deny(
            401, TOKEN_EXPIRED, "The access token has expired.", _challenge(realm, "invalid_token", "token expired")
        )
    return Deny(401, INVALID_TOKEN, "The access token is invalid.", _challenge(realm, "invalid_token"))


def bad_request(realm: str, detail: str) -> Deny:
    return Deny(400, "invalid_request", detail, _challenge(realm, "invalid_request"))


def unavailable() -> Deny:
    return Deny(
        503, "auth_unavailable", "Authentication is temporarily unavailable.", {"Retry-After": RETRY_AFTER_SECONDS}
    )


def internal_error() -> Deny:
    return Deny(500, "internal_error", "The gateway could not process the request.")


# --- the gate ------------------------------------------------------------------------------------------------------


class Gate:
    def __init__(
        self,
        cfg: Config,
        jwks: JwksCache,
        cache: TokenCache,
        denylist: Denylist,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg, self.jwks, self.cache, self.denylist, self.clock = cfg, jwks, cache, denylist, clock
        self.prefixes = tuple(p.lower().replace("_", "-") for p in cfg.strip_header_prefixes)
        self._rid_header = cfg.request_id_header.lower()
        self._known_names: dict[str, bool] = {}  # header name -> only the gateway may set it

    def decide(self, headers: Mapping[str, Any]) -> Verdict:
        cfg = self.cfg
        rid = headers.get(self._rid_header)
        if rid is not None:
            rid = next(iter(_values(rid)), None)
            rid = rid if rid and _REQUEST_ID.match(rid) else None
        lines, strip = self._scan(headers)
        if lines >= cfg.max_request_headers:
            return Verdict(bad_request(cfg.realm, "Too many request headers."), "header limit reached", request_id=rid)
        if len(strip) > MAX_SPOOFED_HEADERS:
            return Verdict(bad_request(cfg.realm, "Too many identity headers."), "spoofed header flood", request_id=rid)
        auth = headers.get("authorization")
        token = bearer_token(auth if type(auth) is list and len(auth) == 1 and type(auth[0]) is str else _values(auth))
        if token is None:
            if cfg.anonymous:
                return Verdict(Allow(upstream_headers={name: [] for name in strip}), request_id=rid)
            return Verdict(missing_token(cfg.realm), request_id=rid)
        outcome = self._authenticate(token) if isinstance(token, str) else self._reject(token)
        if isinstance(outcome, Verdict):
            return outcome._replace(request_id=rid)
        if not strip:  # the common case: the decision built once per token (never mutated by its readers)
            return _verdict(Verdict, (outcome.allow, None, "info", rid))
        setting = outcome.allow.upstream_headers
        lowered = {name.lower() for name in setting}
        clear = [name for name in strip if name.lower() not in lowered]
        if not clear:  # only headers the identity sets anyway (they replace every client copy)
            return Verdict(outcome.allow, None, "info", rid)
        upstream: dict[str, Any] = {name: [] for name in clear}
        upstream.update(setting)
        return Verdict(Allow(upstream_headers=upstream, shared=outcome.allow.shared), None, "info", rid)

    def _scan(self, headers: Mapping[str, Any]) -> tuple[int, list[str]]:
        """One pass over the headers: how many lines (a name with several values counts each) and which names only
        the gateway may set. A name's verdict is remembered (bounded): clients send the same few names."""
        lines, strip, known = 0, [], self._known_names
        for name, value in headers.items():
            lines += len(value) if isinstance(value, list) else 1
            spoofed = known.get(name)
            if spoofed is None:
                spoofed = is_identity_header(name, self.prefixes)
                if len(known) < MAX_KNOWN_NAMES:
                    known[name] = spoofed
            if spoofed:
                strip.append(name)
        return lines, strip

    def _reject(self, failure: Failure) -> Verdict:
        return Verdict(
            rejected_token(self.cfg.realm, failure), f"token rejected: {failure.reason.value}: {failure.detail}"
        )

    def _authenticate(self, token: str) -> CachedToken | Verdict:
        now = self.clock()
        try:
            keys = self.jwks.keys()
        except JwksUnavailable as exc:
            return Verdict(unavailable(), f"JWKS unavailable: {exc}", "error")
        digest = token_digest(token)
        entry = self.cache.get(digest, now, keys)
        if entry is None:
            result = verify(token, keys, self.cfg.verify, now)
            if isinstance(result, Failure) and result.kid and self.jwks.refresh_for_unknown_kid(result.kid):
                result = verify(token, self.jwks.keys(), self.cfg.verify, now)
            if isinstance(result, Failure):
                return self._reject(result)
            entry = self._entry(result)
            self.cache.put(digest, entry)
        return self._check_denylist(entry)

    def _entry(self, verified: Verified) -> CachedToken:
        identity, headers = identity_of(verified.claims)
        valid_until = verified.exp + self.cfg.verify.leeway
        sid = verified.claims.get("sid")
        allow = Allow(upstream_headers=dict(headers), shared={SHARED_IDENTITY: identity})
        return CachedToken(identity, headers, verified.claims["jti"], verified.kid, valid_until, sid, allow)

    def _check_denylist(self, entry: CachedToken) -> CachedToken | Verdict:
        try:
            revoked = self.denylist.is_revoked(entry.jti, entry.sid)
        except DenylistUnavailable as exc:
            if self.cfg.denylist_fault_tolerant:
                return entry
            return Verdict(unavailable(), f"denylist unavailable: {exc}", "error")
        if revoked:
            return self._reject(Failure(Reason.REVOKED, "jti or sid is on the denylist"))
        return entry


# --- one gate per config, shared state per worker process --------------------------------------------------------

_registry_lock = threading.Lock()
_jwks: dict[tuple, JwksCache] = {}
_caches: dict[tuple, TokenCache] = {}
_denylists: dict[tuple[RedisSettings, int], Denylist] = {}


def build_gate(cfg: Config) -> Gate:
    """Kong starts one instance per config and worker: they share JWKS, token caches and Redis pools."""
    jwks_key = (
        cfg.jwks_url,
        cfg.jwks_timeout,
        cfg.jwks_cache_ttl,
        cfg.jwks_refresh_min_interval,
        cfg.verify.algorithms,
    )
    cache_key = (*jwks_key, cfg.verify, cfg.cache_size)
    with _registry_lock:
        if jwks_key not in _jwks:
            _jwks[jwks_key] = JwksCache(
                http_fetcher(cfg.jwks_url, cfg.jwks_timeout),
                cfg.verify.algorithms,
                ttl=cfg.jwks_cache_ttl,
                min_interval=cfg.jwks_refresh_min_interval,
            )
        if cache_key not in _caches:
            _caches[cache_key] = TokenCache(cfg.cache_size)
        denylist_key = (cfg.redis, cfg.denylist_cache_ms)
        if cfg.denylist and denylist_key not in _denylists:
            # revocations pushed by Redis (client-side caching); Cluster reads per request (one slot per session)
            watch = None if cfg.redis.cluster_nodes else RevocationWatch(cfg.redis).start()
            _denylists[denylist_key] = RedisDenylist(
                get_client(cfg.redis), cache_seconds=cfg.denylist_cache_ms / 1000.0, watch=watch
            )
        denylist = _denylists[denylist_key] if cfg.denylist else NoDenylist()
        return Gate(cfg, _jwks[jwks_key], _caches[cache_key], denylist)
