"""Sessions in Redis (issue 17): one hash per session in its own hash slot, changed only by Lua scripts.

``rotate_session.lua`` is the compare-and-rotate: it alone moves a session's generation, so 20 parallel refreshes
with one token yield one rotation; the others fall in the grace window (the same successor) or are a reuse (the
session is deleted). ``create_session.lua`` never overwrites an existing session (a session moved from PostgreSQL
must not undo a rotation), ``revoke_session.lua`` deletes only a session of the named account.

The hash also caches the access token's subject (``claims``, with its invalidation counter ``cv``) and the
second-factor time (``mfa_at``), returned by the rotation so a refresh needs nothing else (claims_cache.py):
``fill_claims.lua`` caches after a miss unless ``cv`` moved, ``touch_claims.lua`` invalidates, ``mark_mfa.lua``
records a step-up; none of them creates a hash that does not exist.

The per-account index (a sorted set of session ids) lives in the account's slot, not the session's: it is a list
for the devices pages, never a decision. It may name a session that has expired or was revoked (listing drops and
prunes those); a session whose index entry was lost is still refreshed, revoked by id and ended by reuse, and is
listed again from its next login (its cached claims then age out by SESSION_CLAIMS_MAX_AGE instead of being
invalidated).

Times are the service clock's (``clock.py``, passed to the scripts), so tests move them; each hash also carries a
Redis TTL so an abandoned session is collected.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.resources import files

from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError

from .. import redis_keys as keys
from ..extensions import redis_store

ROTATED, GRACE, REUSED, GONE = 1, 2, 3, 0
_SOURCES = {
    name: files("storyverse_auth").joinpath(f"lua/{name}.lua").read_text()
    for name in ("rotate_session", "revoke_session", "create_session", "fill_claims", "touch_claims", "mark_mfa")
}
_scripts: dict[tuple[int, str], object] = {}


def _script(name: str):
    client = redis_store.client
    key = (id(client), name)
    script = _scripts.get(key)
    if script is None:
        script = _scripts[key] = client.register_script(_SOURCES[name])  # reloads itself on NOSCRIPT
    return script


@dataclass(frozen=True)
class StoredSession:
    id: uuid.UUID
    account_id: uuid.UUID
    generation: int
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    rotated_at: datetime | None
    user_agent: str | None
    ip: str | None

    @classmethod
    def from_hash(cls, sid: uuid.UUID, h: dict[str, str]) -> StoredSession:
        return cls(
            sid,
            uuid.UUID(h["account_id"]),
            int(h["gen"]),
            _dt(h["created_at"]),
            _dt(h["last_used"]),
            _dt(h["expires_at"]),
            _dt(h["rotated_at"]) if h.get("rotated_at") else None,
            h.get("user_agent") or None,
            h.get("ip") or None,
        )


def _dt(ts: str) -> datetime:
    return datetime.fromtimestamp(float(ts), tz=UTC)


def create(session: StoredSession, ttl: int, clear: Sequence[str] = ()) -> bool:
    """Store ``session`` unless its id exists and index it under its account; also delete the keys in ``clear``
    (a sign-in's throttle counters: another slot). True when this call created the session.

    The index is written before the hash, so a session whose index write failed is never created and nothing live
    is ever unlisted (revoking all of an account's sessions walks the index). On one server (standalone, Sentinel)
    ``create_session.lua`` writes both, after ``clear`` in the same pipeline: one round trip. On Cluster the index
    lives in another slot: ``clear`` and the index go first in one pipeline (their nodes in parallel), then the
    script, two round trips."""
    sid, created_at = str(session.id), session.created_at.timestamp()
    key, index = keys.session(sid), keys.account_sessions(str(session.account_id))
    args = [max(int(ttl), 1), created_at, sid, *_fields(session)]
    client, script = redis_store.client, _script("create_session")
    if isinstance(client, RedisCluster):
        pipe = client.pipeline()
        for name in clear:  # one DEL each: a Cluster pipeline refuses multi-key commands
            pipe.delete(name)
        pipe.zadd(index, {sid: created_at})
        pipe.execute()
        return bool(script(keys=[key], args=args))
    pipe = client.pipeline(transaction=False)
    for name in clear:
        pipe.delete(name)
    pipe.evalsha(script.sha, 2, key, index, *args)  # (a pipeline's own script support adds a SCRIPT EXISTS trip)
    *cleared, created = pipe.execute(raise_on_error=False)
    if isinstance(created, NoScriptError):  # a restarted or failed-over server lost its scripts: load, run alone
        created = script(keys=[key, index], args=args)
    for reply in (*cleared, created):
        if isinstance(reply, Exception):
            raise reply
    return bool(created)


def _fields(session: StoredSession) -> list:
    """The session hash's fields and values, flattened for ``create_session.lua``."""
    fields = {
        "account_id": str(session.account_id),
        "gen": session.generation,
        "created_at": session.created_at.timestamp(),
        "last_used": session.last_used_at.timestamp(),
        "expires_at": session.expires_at.timestamp(),
        "user_agent": session.user_agent or "",
        "ip": session.ip or "",
    }
    if session.rotated_at is not None:
        fields["rotated_at"] = session.rotated_at.timestamp()
    return [item for pair in fields.items() for item in pair]


@dataclass(frozen=True)
class Rotated:
    """What one compare-and-rotate answered: the outcome, the session's account and (for ROTATED and GRACE) the
    cached claims JSON (None: read PostgreSQL), their invalidation counter and the second-factor time."""

    code: int
    account_id: uuid.UUID | None
    claims: str | None = None
    cv: str = "0"
    mfa_at: int | None = None


def rotate(sid: uuid.UUID, generation: int, now: float, idle: int, grace: int, ttl_cap: int) -> Rotated:
    """The compare-and-rotate outcome (ROTATED, GRACE, REUSED or GONE), in one round trip."""
    reply = _script("rotate_session")(keys=[keys.session(str(sid))], args=[generation, now, idle, grace, ttl_cap])
    code, account = int(reply[0]), uuid.UUID(reply[1]) if reply[1] else None
    if len(reply) < 5:
        return Rotated(code, account)
    return Rotated(code, account, reply[2], reply[3], int(float(reply[4])) if reply[4] else None)


def fill_claims(sid: uuid.UUID, cv: str, claims: str, mfa_at: int | None) -> bool:
    """Cache ``claims`` unless they were invalidated since the rotation that saw ``cv`` (or the session ended)."""
    args = [cv, claims, "" if mfa_at is None else mfa_at]
    return bool(_script("fill_claims")(keys=[keys.session(str(sid))], args=args))


def touch_claims(sid: uuid.UUID) -> bool:
    """Invalidate the session's cached claims (never creates the key); True if the session exists."""
    return bool(_script("touch_claims")(keys=[keys.session(str(sid))], args=[]))


def mark_mfa(sid: str, at: int) -> bool:
    """Record a second-factor check in the session's hash (never creates the key)."""
    return bool(_script("mark_mfa")(keys=[keys.session(sid)], args=[at]))


def revoke(sid: uuid.UUID, account_id: uuid.UUID | None) -> uuid.UUID | None:
    """Delete the session if it is ``account_id``'s (anyone's when None): its account, or None if nothing was."""
    owner = account_id
    if owner is None:
        found = redis_store.client.hget(keys.session(str(sid)), "account_id")
        if found is None:
            return None
        owner = uuid.UUID(found)
    if not _script("revoke_session")(keys=[keys.session(str(sid))], args=[str(owner)]):
        return None
    redis_store.client.zrem(keys.account_sessions(str(owner)), str(sid))
    return owner


def session_ids(account_id: uuid.UUID) -> list[uuid.UUID]:
    return [uuid.UUID(m) for m in redis_store.client.zrange(keys.account_sessions(str(account_id)), 0, -1)]


def live(account_id: uuid.UUID, now: float, idle: int) -> list[StoredSession]:
    """The account's live sessions, newest first; index entries of ended sessions are pruned."""
    ids = session_ids(account_id)
    if not ids:
        return []
    pipe = redis_store.client.pipeline(transaction=False)
    for sid in ids:
        pipe.hgetall(keys.session(str(sid)))
    found, dead = [], []
    for sid, h in zip(ids, pipe.execute(), strict=True):
        alive = h and float(h["expires_at"]) > now and now - float(h["last_used"]) < idle
        if alive and h["account_id"] == str(account_id):
            found.append(StoredSession.from_hash(sid, h))
        else:
            dead.append(str(sid))
    if dead:
        redis_store.client.zrem(keys.account_sessions(str(account_id)), *dead)
    return sorted(found, key=lambda s: s.created_at, reverse=True)
