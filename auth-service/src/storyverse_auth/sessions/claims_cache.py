"""The access token's subject cached in the session's Redis hash, so a refresh never reads PostgreSQL (issue 17).

A refresh's token says who the subject is (role, family, tier, time zone), a parent's ``children`` and a child's
stored controls (``tokens.Principal``). ``rotate_session.lua`` returns them with the rotation, from the hash's
``claims`` field; on a miss (a new session, or one invalidated since) the service reads PostgreSQL once and caches
what it read with ``fill_claims.lua``, which refuses when the hash's ``cv`` counter moved since the rotation (a
change committed between the rotation and the read: the next refresh reads again).

**Invalidation** follows the ORM, not a list of call sites: every flush records the accounts and families whose
claim columns changed (``ACCOUNT_CLAIMS``, ``FAMILY_CLAIMS``), plus any account inserted or deleted (a parent's
``children``). Before the commit the family's accounts are resolved and each of their sessions gets
``touch_claims.lua`` (``cv`` + 1, ``claims`` dropped); a Redis failure there aborts the commit (the change is
refused with 503, never committed with stale caches behind it). After the commit the same sessions are touched
once more (a refresh between the two touches may have cached the pre-commit row). A change by hand in SQL, or an
index entry lost in a failover (``store.py``), is caught by ``SESSION_CLAIMS_MAX_AGE``: cached claims older
than that are read again.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import asdict, dataclass, field

import redis
from flask import current_app
from flask_sqlalchemy.session import Session as FlaskSession
from sqlalchemy import event, inspect, select

from ..clock import now_ts
from ..models import Account, Family
from ..tokens.access import Principal
from . import store as session_store

log = logging.getLogger(__name__)

ACCOUNT_CLAIMS = (
    "role",
    "family_id",
    "age_band",
    "content_rating",
    "birth_year",
    "max_content_rating",
    "daily_story_limit",
    "allowed_hours",
    "features",
)
FAMILY_CLAIMS = ("tier", "time_zone")
_INFO = "sv_claims_pending"


# -- the cached form -----------------------------------------------------------------------------------------------


def dumps(principal: Principal) -> str:
    data = asdict(principal)
    data["account_id"], data["family_id"] = str(principal.account_id), str(principal.family_id)
    data["at"] = now_ts()
    return json.dumps(data, separators=(",", ":"))


def loads(text: str | None, account_id: uuid.UUID) -> Principal | None:
    """The cached principal, or None when absent, older than SESSION_CLAIMS_MAX_AGE or not this account's."""
    if not text:
        return None
    data = json.loads(text)
    if now_ts() - float(data.pop("at", 0)) >= int(current_app.config["SESSION_CLAIMS_MAX_AGE"]):
        return None
    if data.get("account_id") != str(account_id):
        return None
    data["account_id"], data["family_id"] = account_id, uuid.UUID(data["family_id"])
    return Principal(**data)


# -- invalidation --------------------------------------------------------------------------------------------------


@dataclass
class _Pending:
    accounts: set[uuid.UUID] = field(default_factory=set)
    families: set[uuid.UUID] = field(default_factory=set)
    resolved: set[uuid.UUID] = field(default_factory=set)


def _changed(obj: object, names: tuple[str, ...]) -> bool:
    attrs = inspect(obj).attrs
    return any(attrs[name].history.has_changes() for name in names)


def _old_and_new(obj: object, name: str) -> set:
    history = inspect(obj).attrs[name].history
    return {v for v in (*history.deleted, *history.added, *history.unchanged) if v is not None}


def _collect(session, _flush_context) -> None:
    """after_flush: the session's new/dirty/deleted collections still show what this flush wrote."""
    pending: _Pending = session.info.setdefault(_INFO, _Pending())
    for obj in session.new:
        if isinstance(obj, Account) and obj.family_id is not None:
            pending.families.add(obj.family_id)  # a new child: every parent's `children` changes
    for obj in session.deleted:
        if isinstance(obj, Account):
            pending.accounts.add(obj.id)
            if obj.family_id is not None:
                pending.families.add(obj.family_id)
        elif isinstance(obj, Family):
            pending.families.add(obj.id)
    for obj in session.dirty:
        if isinstance(obj, Account) and _changed(obj, ACCOUNT_CLAIMS):
            pending.accounts.add(obj.id)
            if _changed(obj, ("role", "family_id")):
                pending.families |= _old_and_new(obj, "family_id")
        elif isinstance(obj, Family) and _changed(obj, FAMILY_CLAIMS):
            pending.families.add(obj.id)
    if not (pending.accounts or pending.families):
        session.info.pop(_INFO, None)


def _before_commit(session) -> None:
    if session.in_nested_transaction():
        return  # a SAVEPOINT release: the outer commit touches everything recorded so far
    session.flush()  # the last changes reach _collect now
    pending: _Pending | None = session.info.get(_INFO)
    if pending is None:
        return
    members = set()
    if pending.families:
        members = set(session.scalars(select(Account.id).where(Account.family_id.in_(pending.families))))
    pending.resolved = pending.accounts | members
    touch_accounts(pending.resolved)  # a RedisError aborts the commit: no change lands with stale caches behind it


def _after_commit(session) -> None:
    if session.in_nested_transaction():
        return
    pending: _Pending | None = session.info.pop(_INFO, None)
    if pending is None or not pending.resolved:
        return
    try:
        touch_accounts(pending.resolved)
    except redis.RedisError as exc:  # the pre-commit touch happened; only a refresh racing the commit can be stale
        log.error("claims invalidation after commit failed", extra={"error_type": type(exc).__name__})


def _transaction_end(session, transaction) -> None:
    if transaction.parent is None:
        session.info.pop(_INFO, None)  # rolled back (a commit has already popped it)


def touch_accounts(account_ids: set[uuid.UUID]) -> int:
    """Invalidate the cached claims of every session of these accounts; how many sessions exist."""
    touched = 0
    for account_id in account_ids:
        for sid in session_store.session_ids(account_id):
            touched += session_store.touch_claims(sid)
    return touched


def install() -> None:
    """Listen on Flask-SQLAlchemy's session class (every ``db.session``); idempotent."""
    for name, listener in (
        ("after_flush", _collect),
        ("before_commit", _before_commit),
        ("after_commit", _after_commit),
        ("after_transaction_end", _transaction_end),
    ):
        if not event.contains(FlaskSession, name, listener):
            event.listen(FlaskSession, name, listener)
