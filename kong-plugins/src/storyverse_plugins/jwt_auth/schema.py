"""sv-jwt config, declared in Kong's schema DSL (the plugin server forwards it as config.fields), and parse_config.

Kong validates each field; ``parse_config`` (called once per config in ``Plugin.__init__``) applies defaults for
Kong's ``null``s and the cross-field rules, and raises ``ValueError`` on a bad config: StartInstance then fails and
Kong answers 500 for the route (fail closed), instead of running with a half-understood config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from storyverse_contracts.identity import IDENTITY_HEADER_PREFIX

from storyverse_plugins.common.redis_pool import RedisSettings
from storyverse_plugins.common.schema_fields import REDIS_FIELDS, parse_redis, schema_field
from storyverse_plugins.jwt_auth.denylist import MAX_CACHE_SECONDS
from storyverse_plugins.jwt_auth.tokens import MAX_LEEWAY_SECONDS, SUPPORTED_ALGORITHMS, VerifyConfig

_ALGS = sorted(SUPPORTED_ALGORITHMS)
# Revocation delay vs Redis reads: see docs/benchmarks-jwt.md ("denylist answer cache").
DEFAULT_DENYLIST_CACHE_MS = 500


Schema = (
    schema_field(
        "jwks_url",
        "URL of the auth service's JWK Set (http or https), e.g. http://auth:8000/.well-known/jwks.json.",
        "string",
        required=True,
    ),
    schema_field("issuer", "Expected `iss` claim, compared exactly.", "string", required=True),
    schema_field("audience", "Expected `aud` claim (or one element of it), compared exactly.", "string", required=True),
    schema_field(
        "algorithms",
        "Signature algorithms accepted; each key also only verifies the ones of its type "
        "(RSA: RS256/PS256, EC P-256: ES256, OKP Ed25519: EdDSA). HS* and none are never accepted.",
        "array",
        elements={"type": "string", "one_of": _ALGS},
        default=["RS256", "ES256", "EdDSA"],
        required=True,
    ),
    schema_field(
        "leeway",
        "Clock skew tolerated on exp, nbf and iat, in seconds (at most 60).",
        "integer",
        default=30,
        between=[0, MAX_LEEWAY_SECONDS],
        required=True,
    ),
    schema_field(
        "anonymous",
        "Public-route mode: a request without a bearer token passes (without identity); a token "
        "that is present but invalid is still a 401.",
        "boolean",
        default=False,
        required=True,
    ),
    schema_field(
        "headers_in_guard",
        "Leave the upstream identity headers (and clearing the client's copies) to sv-edge, a Kong Lua plugin: they "
        "travel in kong.ctx.shared.sv_identity (`upstream`, `clear`), saving one PDK round trip. Only where sv-edge "
        "runs (it applies them before proxy-cache, priority 100, keys on X-User-Id).",
        "boolean",
        default=False,
        required=True,
    ),
    schema_field("realm", "The realm in WWW-Authenticate challenges.", "string", default="storyverse", required=True),
    schema_field(
        "jwks_timeout",
        "Timeout of one JWKS fetch, in seconds.",
        "number",
        default=2.0,
        between=[0.1, 10],
        required=True,
    ),
    schema_field(
        "jwks_cache_ttl",
        "Refetch the JWKS when the cached copy is older than this, in seconds (the old keys "
        "stay in use if the fetch fails).",
        "integer",
        default=300,
        between=[10, 86400],
        required=True,
    ),
    schema_field(
        "jwks_refresh_min_interval",
        "At most one JWKS fetch per this many seconds, whatever triggers it "
        "(unknown kid, expiry); bounds the fetches a flood of random kids can cause.",
        "integer",
        default=30,
        between=[1, 3600],
        required=True,
    ),
    schema_field(
        "cache_size",
        "Verified tokens kept in memory (LRU by SHA-256 of the token; 0 disables the cache).",
        "integer",
        default=10000,
        between=[0, 1000000],
        required=True,
    ),
    schema_field(
        "denylist",
        "Reject tokens the auth service revoked: the token (Redis key sv:revoked:{s:<sid>}:jti:<jti>) or its "
        "session (sv:revoked:{s:<sid>}:sid): one slot, one EXISTS; answers are kept in process while Redis "
        "pushes invalidations (standalone Redis), within the bound denylist_cache_ms.",
        "boolean",
        default=True,
        required=True,
    ),
    schema_field(
        "denylist_cache_ms",
        "The revocation bound, in milliseconds (0: ask Redis on every request; at most 1000): a revocation takes "
        "effect within this time. While Redis pushes invalidations an answer is reused until its key changes; "
        "otherwise for at most this time.",
        "integer",
        default=DEFAULT_DENYLIST_CACHE_MS,
        between=[0, int(MAX_CACHE_SECONDS * 1000)],
        required=True,
    ),
    schema_field(
        "denylist_fault_tolerant",
        "When Redis cannot be read, let verified tokens through instead of "
        "answering 503. Off by default: sv-jwt fails closed.",
        "boolean",
        default=False,
        required=True,
    ),
    schema_field(
        "strip_header_prefixes",
        "Client request headers starting with any of these prefixes are removed on "
        "every route, as are X-User-Id, X-User-Role, X-Family-Id, X-Account-Tier and X-Content-Rating.",
        "array",
        elements={"type": "string"},
        default=[IDENTITY_HEADER_PREFIX],
        required=True,
    ),
    schema_field(
        "max_request_headers",
        "How many request header lines are read; a request with more is refused (400) "
        "so that no spoofed header can hide beyond the limit. Keep it equal to lua_max_req_headers.",
        "integer",
        default=100,
        between=[10, 1000],
        required=True,
    ),
    schema_field(
        "request_id_header",
        "Header whose value (set by sv-request-id) is echoed in problem documents.",
        "string",
        default="X-Request-Id",
        required=True,
    ),
    *REDIS_FIELDS,  # the denylist's Redis: the shared block (redis_host, redis_port, redis_database, ...)
)

# Headers the prefix list may never cover: stripping them would break authentication itself.
_PROTECTED = ("authorization", "host")


@dataclass(frozen=True)
class Config:
    jwks_url: str
    verify: VerifyConfig
    anonymous: bool = False
    headers_in_guard: bool = False
    realm: str = "storyverse"
    jwks_timeout: float = 2.0
    jwks_cache_ttl: int = 300
    jwks_refresh_min_interval: int = 30
    cache_size: int = 10000
    denylist: bool = True
    denylist_cache_ms: int = DEFAULT_DENYLIST_CACHE_MS
    denylist_fault_tolerant: bool = False
    redis: RedisSettings = field(default_factory=RedisSettings, repr=False)
    strip_header_prefixes: tuple[str, ...] = (IDENTITY_HEADER_PREFIX.lower(),)
    max_request_headers: int = 100
    request_id_header: str = "X-Request-Id"


def _get(raw: dict[str, Any], name: str, default: Any) -> Any:
    value = raw.get(name)
    return default if value is None else value


def parse_config(raw: dict[str, Any]) -> Config:
    """Defaults for Kong's nulls, then the cross-field rules; raises ValueError with the first problem."""
    d = Config.__dataclass_fields__
    verify = VerifyConfig(
        issuer=_get(raw, "issuer", ""),
        audience=_get(raw, "audience", ""),
        algorithms=frozenset(_get(raw, "algorithms", ["RS256", "ES256", "EdDSA"])),
        leeway=int(_get(raw, "leeway", 30)),
    )
    values = {name: _get(raw, name, d[name].default) for name in d if name not in ("jwks_url", "verify", "redis")}
    values["strip_header_prefixes"] = tuple(p.lower() for p in values["strip_header_prefixes"])
    cfg = Config(jwks_url=_get(raw, "jwks_url", ""), verify=verify, redis=parse_redis(raw), **values)
    _check_rules(cfg)
    return cfg


def _check_rules(cfg: Config) -> None:
    url = urlsplit(cfg.jwks_url)
    if url.scheme not in ("http", "https") or not url.hostname or url.username or url.password:
        raise ValueError("jwks_url must be an http(s) URL with a host and no credentials")
    if cfg.jwks_refresh_min_interval > cfg.jwks_cache_ttl:
        raise ValueError("jwks_refresh_min_interval must not exceed jwks_cache_ttl")
    for prefix in cfg.strip_header_prefixes:
        if not prefix or any(name.startswith(prefix) for name in _PROTECTED):
            raise ValueError(f"strip_header_prefixes: {prefix!r} would strip Authorization or Host")
    if not 0 <= cfg.denylist_cache_ms <= MAX_CACHE_SECONDS * 1000:
        raise ValueError("denylist_cache_ms must be between 0 and 1000")
    if cfg.denylist and not (cfg.redis.host or cfg.redis.cluster_nodes):
        raise ValueError("denylist needs redis_host or redis_cluster_nodes")
    if not cfg.realm.isprintable() or '"' in cfg.realm or "\\" in cfg.realm:
        raise ValueError("realm must be printable and contain no quotes or backslashes")
