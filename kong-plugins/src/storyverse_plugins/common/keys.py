"""Every sv-quota Redis key is built here (STYLE principle 10), under one versioned prefix.

All keys of one subject carry the same `{...}` hash tag, so one Lua script can touch all of them on Redis Cluster:
  family / user subject  {f:<family_id>} (or {u:<sub>} without a family)   rate keys + quota counters + reservations
  anonymous subject      {ip:<client ip>}                                  rate keys
Abuse state lives under the same tag as the subject it blocks, so decide.lua reads the block in the same round trip.

Layout (docs for the auth service, which reads counters and writes grants):
  sv:quota:v1:{f:F}:rl:<policy>:u:<sub>      GCRA theoretical arrival time (ms, string), PEXPIRE at full refill
  sv:quota:v1:{ip:A}:rl:<policy>             same, for anonymous routes
  sv:quota:v1:{f:F}:q:<scope>:<YYYY-MM-DD>   hash: used (committed units), grant (extra units an admin granted)
  sv:quota:v1:{f:F}:q:<scope>:<date>:res     zset: reservation id -> expiry (ms) of in-flight requests
  sv:quota:v1:{f:F}:ab:u:<sub>               hash: an account's strikes window and block state (abuse.lua)
  sv:quota:v1:{ip:A}:ab                      hash: the same for a client IP
  sv:quota:v1:{ip:A}:ab:login                set: fingerprints of distinct accounts that failed to log in from A
  sv:quota:v1:{abuse}:blocks                 zset: abuse hash key -> block end (ms); the admin list (quota.abuse)
where <scope> is `fam` (the family's shared quota), `u:<sub>` (per-user quota) or `c:<sub>` (a child's own limit)
and <date> is the local date in the family's time zone.
"""

from __future__ import annotations

import re

PREFIX = "sv:quota:v1:"

_UNSAFE = re.compile(r"[{}\s]")


def _clean(value: str) -> str:
    """Braces would break the hash tag and whitespace the logs: replace them."""
    return _UNSAFE.sub("_", str(value))


def subject_tag(identity: dict | None, ip: str | None) -> str:
    """The hash tag of the request's subject: the family, else the user, else the client IP."""
    if identity:
        family = identity.get("family_id")
        if family:
            return "{f:" + _clean(family) + "}"
        if identity.get("sub"):
            return "{u:" + _clean(identity["sub"]) + "}"
    return "{ip:" + _clean(ip or "unknown") + "}"


def rate_key(tag: str, policy: str, sub: str | None) -> str:
    """GCRA state of one policy for a user (sub) or, when sub is None, for the tag's IP."""
    if sub:
        return f"{PREFIX}{tag}:rl:{policy}:u:{_clean(sub)}"
    return f"{PREFIX}{tag}:rl:{policy}"


def quota_key(tag: str, scope: str, day: str) -> str:
    """Daily counter hash (fields `used`, `grant`) of a quota scope: `fam`, `u:<sub>` or `c:<sub>`."""
    return f"{PREFIX}{tag}:q:{_clean(scope)}:{day}"


def reservations_key(counter_key: str) -> str:
    """The zset of in-flight reservations that belongs to a daily counter."""
    return counter_key + ":res"


def abuse_key(tag: str, sub: str | None = None) -> str:
    """Strike and block state of an account (sub, under its family's tag) or, when sub is None, of the tag's IP."""
    if sub:
        return f"{PREFIX}{tag}:ab:u:{_clean(sub)}"
    return f"{PREFIX}{tag}:ab"


def login_failures_key(tag: str) -> str:
    """Fingerprints of the distinct accounts whose login failed from the tag's IP (credential stuffing)."""
    return f"{PREFIX}{tag}:ab:login"


BLOCKS_INDEX = PREFIX + "{abuse}:blocks"  # one slot of its own: written after a block is set, read by admins

# -- revocation (written by the auth service, storyverse_auth/redis_keys.py, which must build them identically) -------
# Both keys of a session share the hash tag {s:<sid>}, so sv-jwt reads them in ONE round trip on Redis Cluster too;
# a token without a session is tagged by its own jti:
#   sv:revoked:{s:<sid>}:sid          every access token of the session is revoked
#   sv:revoked:{s:<sid>}:jti:<jti>    this access token is revoked      ({j:<jti>} instead of {s:<sid>} without sid)
REVOKED_PREFIX = "sv:revoked:"


def revoked_jti_key(jti: str, sid: str | None) -> str:
    tag = f"s:{sid}" if sid else f"j:{jti}"
    return f"{REVOKED_PREFIX}{{{tag}}}:jti:{jti}"


def revoked_sid_key(sid: str) -> str:
    return f"{REVOKED_PREFIX}{{s:{sid}}}:sid"
