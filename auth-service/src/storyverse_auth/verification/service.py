"""Issue, resend and consume verification links; the gate the family routes call. Add to the session; never commit.

A link is ``secrets.token_urlsafe(32)``, stored as ``HMAC(secret, "verify:<token>")``, valid ``EMAIL_VERIFY_TTL``
seconds (24 h), consumed by one conditional UPDATE, and a new link retires every older one. Resending is throttled
per account in Redis: one mail per ``EMAIL_VERIFY_RESEND_SECONDS`` (60 s) and ``EMAIL_VERIFY_RESEND_PER_DAY`` (5)
per rolling day. ``EMAIL_VERIFICATION_REQUIRED`` (on by default) makes child creation and consent refuse an
unverified parent with ``403 email_unverified``.
"""

from __future__ import annotations

import os
import secrets
import uuid
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import update

from .. import mailer, secrets_box, single_use
from ..clock import now
from ..errors import APIError
from ..extensions import db, redis_store
from ..models import Account
from .models import EmailVerification

VERIFY_URL = os.environ.get("EMAIL_VERIFY_URL", "http://localhost:3000/verify-email?token={token}")
REQUIRED = os.environ.get("EMAIL_VERIFICATION_REQUIRED", "1") != "0"
TTL_SECONDS = 24 * 3600
RESEND_SECONDS = 60
RESEND_PER_DAY = 5
_KEY = "sv:auth:v1:verify-resend:"


def _setting(name: str, default: Any) -> Any:
    return current_app.config.get(name, default)


def _hash(token: str) -> str:
    return secrets_box.token_mac(f"verify:{token}")


def is_verified(account: Account) -> bool:
    return account.email_verified_at is not None


def require_verified(account: Account) -> None:
    """403 ``email_unverified`` for a parent who has not verified the address (when the gate is on)."""
    if _setting("EMAIL_VERIFICATION_REQUIRED", REQUIRED) and not is_verified(account):
        raise APIError(
            403, "email_unverified", "Verify your e-mail address first (the link is in your welcome e-mail)."
        )


def issue(account: Account, subject: str, intro: str, new_account: bool = False) -> None:
    """Retire the account's open links (a new account has none: no statement, so registering a new address costs
    what the taken-address branch costs), create a new one and mail it."""
    assert account.email is not None
    ts = now()
    if not new_account:
        db.session.execute(
            update(EmailVerification)
            .where(EmailVerification.account_id == account.id, EmailVerification.used_at.is_(None))
            .values(used_at=ts)
            .execution_options(synchronize_session=False)
        )
    token = secrets.token_urlsafe(32)
    ttl = int(_setting("EMAIL_VERIFY_TTL", TTL_SECONDS))
    db.session.add(
        EmailVerification(
            token_hash=_hash(token),
            account=account,
            email=account.email,
            created_at=ts,
            expires_at=ts + timedelta(seconds=ttl),
        )
    )
    link = str(_setting("EMAIL_VERIFY_URL", VERIFY_URL)).format(token=token)
    mailer.send(account.email, subject, f"{intro}Confirm your e-mail address within {ttl // 3600} hours:\n{link}\n")


def resend(account: Account) -> None:
    """A new link, unless the address is verified (409) or the account asked too often (429)."""
    if is_verified(account):
        raise APIError(409, "email_already_verified", "This e-mail address is already verified.")
    _throttle(account.id)
    issue(account, "Confirm your StoryVerse e-mail address", "")


def _throttle(account_id: uuid.UUID) -> None:
    key = f"{_KEY}{account_id}"
    gap = int(_setting("EMAIL_VERIFY_RESEND_SECONDS", RESEND_SECONDS))
    per_day = int(_setting("EMAIL_VERIFY_RESEND_PER_DAY", RESEND_PER_DAY))
    client = redis_store.client
    if not client.set(key + ":gap", "1", nx=True, ex=gap):
        raise APIError.throttled(int(client.ttl(key + ":gap")))
    count = client.incr(key + ":day")
    if count == 1:
        client.expire(key + ":day", 24 * 3600)
    if count > per_day:
        raise APIError.throttled(int(client.ttl(key + ":day")))


def consume(token: str) -> bool:
    """Mark the link used and the address verified; False if unknown, used, expired or for an old address."""
    ts = now()
    row = single_use.spend(EmailVerification, _hash(token), ts, EmailVerification.account_id, EmailVerification.email)
    if row is None:
        return False
    account = db.session.get(Account, row[0])
    if account is None or account.email != row[1]:
        return False
    if account.email_verified_at is None:
        account.email_verified_at = ts
    return True
