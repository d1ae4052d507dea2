"""Every Redis key more than one service reads or writes is built here (STYLE principle 10).

Quota, rate and abuse state, under one versioned prefix. sv-quota (kong-plugins) writes them per request; the rate
limiting service reads the counters (usage, gauges), writes grants, occasions and unblocks. All keys of one subject
carry the same ``{...}`` hash tag, so one Lua script can touch all of them on Redis Cluster:
  family / user subject  {f:<family_id>} (or {u:<sub>} without a family)   rate keys + quota counters + reservations
  anonymous subject      {ip:<client ip>}                                  rate keys
Abuse state lives under the same tag as the subject it blocks, so decide.lua reads the block in the same round trip:
a live block is also a plain string key (`blk`), so one MGET reads the rate state and the block together.

  sv:quota:v1:{f:F}:rl:<policy>:u:<sub>      GCRA theoretical arrival time (ms, string), PEXPIRE at full refill
  sv:quota:v1:{ip:A}:rl:<policy>             same, for anonymous routes
  sv:quota:v1:{f:F}:q:<scope>:<YYYY-MM-DD>   hash: used (committed units), grant (extra units an admin granted),
                                             occ (the occasion stories included in grant),
                                             r:<rid> -> expiry (ms) of each in-flight reservation (a held unit; one
                                             whose expiry passed lapsed and counts as used until sv-quota sweeps
                                             it into `used`)
  sv:quota:v1:{u:S}:q:u:<sub>:<YYYY-MM-DD>   the same for an account without a family
  sv:quota:v1:{f:F}:ab:u:<sub>               hash: an account's strikes window and block state (abuse.lua)
  sv:quota:v1:{ip:A}:ab                      hash: the same for a client IP
  sv:quota:v1:{f:F}:blk:u:<sub>              string: block end (ms) while an account is blocked (PX: the block)
  sv:quota:v1:{ip:A}:blk                     string: the same for a client IP
  sv:quota:v1:{ip:A}:ab:login                set: fingerprints of distinct accounts that failed to log in from A
  sv:quota:v1:{abuse}:blocks                 zset: abuse hash key -> block end (ms); the admin list
  sv:quota:v1:{plans}:occasions              hash: date (YYYY-MM-DD or MM-DD) -> extra stories (admin API)
where <scope> is `fam` (the family's shared quota), `u:<sub>` (per-user quota) or `c:<sub>` (a child's own limit)
and <date> is the local date in the family's time zone.

Revocation, written by the auth service and read by sv-jwt. Both keys of a session share the hash tag {s:<sid>}, so
sv-jwt reads them in ONE round trip on Redis Cluster too; a token without a session is tagged by its own jti:
  sv:revoked:{s:<sid>}:sid          every access token carrying this session id (``sid`` claim) is revoked
                                    (TTL = access-token lifetime, so it outlives every token of the session)
  sv:revoked:{s:<sid>}:jti:<jti>    this access token is revoked (value "1", TTL = its remaining lifetime);
                                    {j:<jti>} instead of {s:<sid>} for a token without ``sid``
The auth service's own keys (sessions, throttles; no other service reads them) are its ``redis_keys``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

PREFIX = "sv:quota:v1:"
BLOCKS_INDEX = PREFIX + "{abuse}:blocks"  # one slot of its own: written after a block is set, read by admins
OCCASIONS = PREFIX + "{plans}:occasions"
# Hash tags are literal braces; SCAN's glob treats `{` `}` as plain characters.
COUNTER_PATTERN = PREFIX + "{*}:q:*"
REVOKED_PREFIX = "sv:revoked:"

_UNSAFE = re.compile(r"[{}\s]")
_COUNTER = re.compile(
    re.escape(PREFIX) + r"\{(?P<kind>[fu]):(?P<tag_id>[^}]*)\}:q:(?P<scope>fam|[uc]:[^:]+):(?P<day>\d{4}-\d{2}-\d{2})\Z"
)
SCOPE_NAMES = {"fam": "family", "u": "user", "c": "child"}


def _clean(value: str) -> str:
    """Braces would break the hash tag and whitespace the logs: replace them."""
    return _UNSAFE.sub("_", str(value))


# -- quota, rate and abuse ------------------------------------------------------------------------------------------


def family_tag(family_id: str) -> str:
    return "{f:" + _clean(family_id) + "}"


def subject_tag(identity: dict | None, ip: str | None) -> str:
    """The hash tag of the request's subject: the family, else the user, else the client IP."""
    if identity:
        family = identity.get("family_id")
        if family:
            return family_tag(family)
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


RESERVATION = "r:"  # a counter hash's field per in-flight reservation: r:<rid> -> expiry ms


def family_key(family_id: str, day: str) -> str:
    return quota_key(family_tag(family_id), "fam", day)


def child_key(family_id: str, child_id: str, day: str) -> str:
    return quota_key(family_tag(family_id), "c:" + str(child_id), day)


def user_key(family_id: str, account_id: str, day: str) -> str:
    return quota_key(family_tag(family_id), "u:" + str(account_id), day)


def abuse_key(tag: str, sub: str | None = None) -> str:
    """Strike and block state of an account (sub, under its family's tag) or, when sub is None, of the tag's IP."""
    if sub:
        return f"{PREFIX}{tag}:ab:u:{_clean(sub)}"
    return f"{PREFIX}{tag}:ab"


def block_key(abuse: str) -> str:
    """The string key holding a live block's end (ms) for an abuse hash key: `...}:ab...` -> `...}:blk...`."""
    head, sep, tail = abuse.partition("}:ab")
    return head + "}:blk" + tail if sep else abuse + ":blk"


def login_failures_key(tag: str) -> str:
    """Fingerprints of the distinct accounts whose login failed from the tag's IP (credential stuffing)."""
    return f"{PREFIX}{tag}:ab:login"


@dataclass(frozen=True)
class CounterKey:
    """A parsed daily counter key."""

    key: str
    family_id: str  # the family of a `{f:...}` tag; "" for a `{u:...}` tag
    scope: str  # family | user | child
    subject: str  # the account id; "" for the family pool
    day: dt.date


def parse_counter(key: str) -> CounterKey | None:
    """The counter a key names, or None for other sv-quota keys and malformed names."""
    match = _COUNTER.match(key)
    if match is None:
        return None
    try:
        day = dt.date.fromisoformat(match["day"])
    except ValueError:
        return None
    scope_text = match["scope"]
    scope = SCOPE_NAMES["fam" if scope_text == "fam" else scope_text[0]]
    subject = "" if scope_text == "fam" else scope_text[2:]
    family_id = match["tag_id"] if match["kind"] == "f" else ""
    return CounterKey(key, family_id, scope, subject, day)


# -- revocation -----------------------------------------------------------------------------------------------------


def revoked_jti_key(jti: str, sid: str | None) -> str:
    tag = f"s:{sid}" if sid else f"j:{jti}"
    return f"{REVOKED_PREFIX}{{{tag}}}:jti:{jti}"


def revoked_sid_key(sid: str) -> str:
    return f"{REVOKED_PREFIX}{{s:{sid}}}:sid"
