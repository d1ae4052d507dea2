"""Consent withdrawal, export and deletion. Add to the session; never commit.

Revoking "everything at the gateway" for an account means: every session (``sv:revoked:sid:<sid>``), every OAuth
grant (``sv:revoked:sid:<grant id>``) and every API key (``sv:revoked:sid:<key id>``), so sv-jwt refuses every
access token already issued from the next request on, and nothing can mint a new one.

- **Consent withdrawal** (a parent, for a child of the family): the profile is inactive again (``consented_at`` =
  NULL, a ``withdrawn`` row in the consent ledger), the child's sessions are revoked and its pending or approved
  device sign-ins denied, so the child can no longer sign in or use a token. The profile, its controls and the
  ledger stay (so the parent can consent again or delete the child); the stories services keep the stories under
  the family (X-Family-Id) and the child can no longer reach them. Deleting the child removes the profile.
- **Account deletion**: the parent's request (re-entered password; a second factor when set up) revokes everything
  of the account, and, when this parent is the family's last, of every child too, then waits
  ``ACCOUNT_DELETION_GRACE`` seconds (7 days). Signing in again inside the grace period is allowed so the parent can
  cancel (``DELETE /api/auth/account/deletion``). After it, ``flask privacy purge`` (run it from cron) hard-deletes
  the account, or the whole family (children, consents, sessions, grants, keys, subscription: ON DELETE CASCADE)
  when it was the last parent.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import delete, func, select, update

from ..apikeys import service as apikeys
from ..apikeys.models import ApiKey
from ..billing.models import Subscription
from ..children import service as children
from ..clock import now
from ..errors import APIError
from ..extensions import db
from ..mfa import service as mfa
from ..models import Account, Consent, DeviceAuthorization, Family
from ..oauth import grants
from ..oauth.models import OAuthClient, OAuthGrant
from ..sessions import service as sessions
from .models import AccountDeletion

GRACE_SECONDS = 7 * 24 * 3600
WITHDRAWN = "withdrawn"


def revoke_everything(account_id: uuid.UUID, reason: str) -> int:
    """Revoke every session, OAuth grant and API key of the account (denylisted for the gateway)."""
    count = sessions.revoke_all(account_id, reason)
    live = select(OAuthGrant.id).where(OAuthGrant.account_id == account_id, OAuthGrant.revoked_at.is_(None))
    for grant_id in db.session.scalars(live).all():
        count += grants.revoke(grant_id, reason)
    keys = select(ApiKey.id).where(ApiKey.owner_id == account_id, ApiKey.revoked_at.is_(None))
    for key_id in db.session.scalars(keys).all():
        count += apikeys.revoke(account_id, key_id)
    return count


# -- consent withdrawal ------------------------------------------------------------------------------------------


def withdraw_consent(parent: Account, child: Account) -> int:
    if child.consented_at is None:
        raise APIError(409, "consent_not_given", "This profile has no consent to withdraw.")
    ts = now()
    child.consented_at = None
    db.session.add(
        Consent(
            id=uuid.uuid4(),
            child_id=child.id,
            giver_id=parent.id,
            policy_version=children.latest_consent(child.id).policy_version,
            agreed=[],
            method=WITHDRAWN,
            created_at=ts,
        )
    )
    db.session.execute(
        update(DeviceAuthorization)
        .where(DeviceAuthorization.child_id == child.id, DeviceAuthorization.status.in_(("pending", "approved")))
        .values(status="denied", decided_at=ts, decided_by=parent.id)
        .execution_options(synchronize_session=False)
    )
    return revoke_everything(child.id, "consent_withdrawn")


# -- export --------------------------------------------------------------------------------------------------------


def export(parent: Account) -> dict[str, Any]:
    """The family's data as this service holds it (JSON): no secrets, hashes or other parents' e-mail addresses."""
    family = parent.family
    sub = db.session.get(Subscription, family.id)
    kids = children.list_children(family.id)
    return {
        "exported_at": now(),
        "account": {
            "id": str(parent.id),
            "email": parent.email,
            "email_verified": parent.email_verified_at is not None,
            "display_name": parent.display_name,
            "created_at": parent.created_at,
            "password_changed_at": parent.password_changed_at,
            "mfa": mfa.status(parent),
            "sessions": [_session(s) for s in _sessions(parent.id)],
            "connected_apps": _apps(parent.id),
            "api_keys": [apikeys.to_dict(k) for k in apikeys.list_keys(parent.id)],
            "deletion": _deletion(parent.id),
        },
        "family": {
            "id": str(family.id),
            "name": family.name,
            "time_zone": family.time_zone,
            "plan": family.tier,
            "subscription": None
            if sub is None
            else {"plan": sub.plan, "status": sub.status, "updated_at": sub.updated_at},
            "parents": [{"id": str(p.id), "display_name": p.display_name} for p in _parents(family.id)],
            "children": [_child(c) for c in kids],
        },
    }


def _sessions(account_id: uuid.UUID) -> list[Any]:
    """The live sessions, through the sessions service (wherever it keeps them)."""
    return sorted(sessions.live_sessions(account_id), key=lambda s: s.created_at)


def _session(s: Any) -> dict[str, Any]:
    return {
        "id": str(s.id),
        "created_at": s.created_at,
        "last_used_at": s.last_used_at,
        "expires_at": s.expires_at,
        "user_agent": s.user_agent,
        "ip": s.ip,
    }


def _apps(account_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = db.session.execute(
        select(OAuthClient.client_name, OAuthGrant.scope, OAuthGrant.created_at, OAuthGrant.revoked_at)
        .join(OAuthClient, OAuthClient.id == OAuthGrant.client_pk)
        .where(OAuthGrant.account_id == account_id)
        .order_by(OAuthGrant.created_at)
    )
    return [{"client_name": n, "scope": sc, "created_at": c, "revoked_at": r} for n, sc, c, r in rows]


def _parents(family_id: uuid.UUID) -> list[Account]:
    stmt = select(Account).where(Account.family_id == family_id, Account.role == "parent").order_by(Account.created_at)
    return list(db.session.scalars(stmt))


def _child(child: Account) -> dict[str, Any]:
    stored = children.stored_controls(child)
    ledger = db.session.scalars(select(Consent).where(Consent.child_id == child.id).order_by(Consent.created_at))
    return {
        "id": str(child.id),
        "display_name": child.display_name,
        "username": child.username,
        "birth_year": child.birth_year,
        "active": child.consented_at is not None,
        "created_at": child.created_at,
        "controls": {
            "max_content_rating": stored.max_content_rating,
            "daily_story_limit": stored.daily_story_limit,
            "allowed_hours": stored.allowed_hours,
            "features": list(stored.features),
        },
        "consents": [
            {"at": c.created_at, "policy_version": c.policy_version, "agreed": c.agreed, "method": c.method}
            for c in ledger
        ],
        "sessions": [_session(s) for s in _sessions(child.id)],
    }


# -- deletion ------------------------------------------------------------------------------------------------------


def _deletion(account_id: uuid.UUID) -> dict[str, Any] | None:
    row = db.session.get(AccountDeletion, account_id)
    return None if row is None else {"requested_at": row.requested_at, "purge_after": row.purge_after}


def _last_parent(parent: Account) -> bool:
    stmt = select(func.count()).where(Account.family_id == parent.family_id, Account.role == "parent")
    return int(db.session.scalar(stmt) or 0) <= 1


def request_deletion(parent: Account) -> dict[str, Any]:
    if db.session.get(AccountDeletion, parent.id) is not None:
        raise APIError(409, "deletion_pending", "This account is already scheduled for deletion.")
    ts = now()
    grace = int(current_app.config.get("ACCOUNT_DELETION_GRACE", GRACE_SECONDS))
    db.session.add(AccountDeletion(account_id=parent.id, requested_at=ts, purge_after=ts + timedelta(seconds=grace)))
    revoke_everything(parent.id, "account_deletion")
    family_too = _last_parent(parent)
    if family_too:
        for child in children.list_children(parent.family_id):
            revoke_everything(child.id, "account_deletion")
    db.session.flush()
    return {**(_deletion(parent.id) or {}), "family_deleted": family_too}


def cancel_deletion(parent: Account) -> None:
    found = db.session.get(AccountDeletion, parent.id)
    if found is None:
        raise APIError(404, "no_deletion_pending", "This account is not scheduled for deletion.")
    db.session.delete(found)


def purge_due() -> int:
    """Hard-delete every account whose grace period is over (the family with its last parent); returns the count."""
    due = db.session.scalars(select(AccountDeletion.account_id).where(AccountDeletion.purge_after <= now())).all()
    for account_id in due:
        account = db.session.get(Account, account_id)
        if account is None:
            continue
        revoke_everything(account.id, "account_deleted")  # sessions opened during the grace period
        if _last_parent(account):
            for child in children.list_children(account.family_id):
                revoke_everything(child.id, "account_deleted")
            db.session.execute(delete(Family).where(Family.id == account.family_id))
        else:
            db.session.execute(delete(Account).where(Account.id == account.id))
        db.session.expunge_all()
    return len(due)
