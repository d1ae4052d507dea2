"""Sessions in Redis (issue 17): one hash per session in its own hash slot, changed only by three Lua scripts.

``rotate_session.lua`` is the compare-and-rotate: it alone moves a session's generation, so 20 parallel refreshes
with one token yield one rotation; the others fall in the grace window (the same successor) or are a reuse (the
session is deleted). ``create_session.lua`` never overwrites an existing session (a session moved from PostgreSQL
must not undo a rotation), ``revoke_session.lua`` deletes only a session of the named account.

The per-account index (a sorted set of session ids) lives in the account's slot, not the session's: it is a list
for the devices pages, never a decision. It may name a session that has expired or was revoked (listing drops and
prunes those); a session whose index entry was lost is still refreshed, revoked by id and ended by reuse, and is
listed again from its next login.

Times are the service clock's (``clock.py``, passed to the scripts), so tests move them; each hash also carries a
Redis TTL so an abandoned session is collected.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.resources import files

from .. import redis_keys as keys
from ..extensions import redis_store

ROTATED, GRACE, REUSED, GONE = 1, 2, 3, 0
_SOURCES = {
    name: files("storyverse_auth").joinpath(f"lua/{name}.lua").read_text()
    for name in ("rotate_session", "revoke_session", "create_session")
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


def create(session: StoredSession, ttl: int) -> bool:
    """Store ``session`` unless its id exists; index it under its account. True when this call created it."""
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
    client = redis_store.client
    # The index first: a session whose index write failed is never created, so nothing live is ever unlisted.
    client.zadd(keys.account_sessions(str(session.account_id)), {str(session.id): session.created_at.timestamp()})
    args: list = [max(int(ttl), 1)]
    for name, value in fields.items():
        args += [name, value]
    return bool(_script("create_session")(keys=[keys.session(str(session.id))], args=args))


def rotate(
    sid: uuid.UUID, generation: int, now: float, idle: int, grace: int, ttl_cap: int
) -> tuple[int, uuid.UUID | None]:
    """The compare-and-rotate outcome (ROTATED, GRACE, REUSED or GONE) and the session's account."""
    code, account = _script("rotate_session")(
        keys=[keys.session(str(sid))], args=[generation, now, idle, grace, ttl_cap]
    )
    return int(code), uuid.UUID(account) if account else None


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
