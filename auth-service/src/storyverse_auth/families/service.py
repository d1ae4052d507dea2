"""Families: who may manage them, co-parent invitations, re-authentication. Add to the session; never commit.

Only a ``parent`` manages a family (children and admins never do), and only the family its account belongs to *now*
(read from the database, not from the token). Invitations are random, single-use, HMAC'd at rest and consumed by
one conditional UPDATE, like password reset tokens.
"""

from __future__ import annotations

import os
import secrets
import uuid
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, select, update

from .. import mailer, secrets_box, single_use
from ..auth import accounts, throttle
from ..clock import now
from ..errors import APIError
from ..extensions import db
from ..models import Account, FamilyInvitation
from ..password.hashing import passwords
from . import errors as family_errors

MAX_PARENTS = 2
# Overridable in the app config (FAMILY_INVITE_TTL, FAMILY_INVITE_URL); the URL also from the environment.
INVITE_TTL_SECONDS = 7 * 24 * 3600
INVITE_URL = os.environ.get("FAMILY_INVITE_URL", "http://localhost:3000/join-family?token={token}")


def require_parent(claims: dict[str, Any]) -> Account:
    """The calling parent's account; 403 for children and admins, 401 when the account is gone."""
    if claims.get("role") != "parent":
        raise family_errors.parent_only()
    account = db.session.get(Account, uuid.UUID(claims["sub"]))
    if account is None:
        raise APIError.token_revoked()
    if account.role != "parent":
        raise family_errors.parent_only()
    return account


def reauthenticate(parent: Account, password: str, ip: str) -> None:
    """Check the parent's password again (throttled like login) before a sensitive change."""
    if parent.email is None:
        raise APIError.invalid_credentials()
    throttle.check(parent.email, ip)
    if not passwords().verify(parent.password_hash, password):
        throttle.record_failure(parent.email, ip, reason="bad_reauth_password")
        raise APIError.invalid_credentials()
    throttle.record_success(parent.email, ip)


def parents_of(family_id: uuid.UUID) -> list[Account]:
    stmt = (
        select(Account)
        .where(Account.family_id == family_id, Account.role == "parent")
        .order_by(Account.created_at, Account.id)
    )
    return list(db.session.scalars(stmt))


def _count_parents(family_id: uuid.UUID) -> int:
    stmt = select(func.count()).where(Account.family_id == family_id, Account.role == "parent")
    return int(db.session.scalar(stmt) or 0)


def _invite_hash(token: str) -> str:
    return secrets_box.token_mac(f"invite:{token}")


def invite(parent: Account, email: str) -> None:
    """Mail a single-use invitation to join ``parent``'s family; it replaces any pending one."""
    if _count_parents(parent.family_id) >= MAX_PARENTS:
        raise family_errors.family_full(MAX_PARENTS)
    ts = now()
    db.session.execute(
        update(FamilyInvitation)
        .where(FamilyInvitation.family_id == parent.family_id, FamilyInvitation.used_at.is_(None))
        .values(used_at=ts)
        .execution_options(synchronize_session=False)
    )
    token = secrets.token_urlsafe(32)
    ttl = int(current_app.config.get("FAMILY_INVITE_TTL", INVITE_TTL_SECONDS))
    address = accounts.normalise_email(email)
    db.session.add(
        FamilyInvitation(
            token_hash=_invite_hash(token),
            family_id=parent.family_id,
            email=address,
            invited_by=parent.id,
            created_at=ts,
            expires_at=ts + timedelta(seconds=ttl),
        )
    )
    link = current_app.config.get("FAMILY_INVITE_URL", INVITE_URL).format(token=token)
    body = f"{parent.display_name} invited you to their StoryVerse family.\nJoin within {ttl // 3600} hours:\n{link}\n"
    mailer.send(address, "Join your family on StoryVerse", body)


def join(token: str, password: str, display_name: str) -> Account:
    """Consume an invitation and create the co-parent's account in the inviting family."""
    ts = now()
    row = single_use.spend(
        FamilyInvitation, _invite_hash(token), ts, FamilyInvitation.family_id, FamilyInvitation.email
    )
    if row is None:
        raise family_errors.invalid_invitation()
    family_id, email = row
    accounts.check_password_policy(password, email)
    if accounts.find_by_email(email) is not None:
        raise family_errors.email_taken()
    if _count_parents(family_id) >= MAX_PARENTS:
        raise family_errors.family_full(MAX_PARENTS)
    account = Account(
        id=uuid.uuid4(),
        family_id=family_id,
        email=email,
        password_hash=passwords().hash(password),
        role="parent",
        display_name=display_name,
        created_at=ts,
        password_changed_at=ts,
        email_verified_at=ts,  # the invitation link was mailed to this address
    )
    db.session.add(account)
    db.session.flush()
    return account
