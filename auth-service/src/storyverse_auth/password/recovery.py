"""Password reset tokens: random, single-use, HMAC'd at rest, 30-minute expiry, consumed by one conditional UPDATE."""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta

from flask import current_app
from sqlalchemy import update

from .. import mailer, metrics, secrets_box, single_use
from ..auth.accounts import find_by_email
from ..clock import now
from ..extensions import db
from ..models import PasswordResetToken


def _hash(token: str) -> str:
    return secrets_box.token_mac(f"reset:{token}")


def request_reset(email: str) -> None:
    """Mail a reset link if the account exists; do nothing visible otherwise."""
    account = find_by_email(email)
    token = secrets.token_urlsafe(32)
    token_hash = _hash(token)  # computed on both branches: equal work
    if account is None or account.email is None:
        return
    ts = now()
    db.session.add(
        PasswordResetToken(
            token_hash=token_hash,
            account_id=account.id,
            created_at=ts,
            expires_at=ts + timedelta(seconds=current_app.config["RESET_TOKEN_TTL"]),
        )
    )
    link = current_app.config["RESET_URL"].format(token=token)
    mailer.send(account.email, "Reset your StoryVerse password", f"Use this link within 30 minutes:\n{link}\n")
    metrics.inc("sv_auth_password_resets_total", stage="requested")


def consume(token: str) -> uuid.UUID | None:
    """Atomically mark the token used; return its account id, or None if unknown, used or expired."""
    ts = now()
    row = single_use.spend(PasswordResetToken, _hash(token), ts, PasswordResetToken.account_id)
    account_id = row[0] if row is not None else None
    if account_id is not None:
        # Any other outstanding token for the account dies with this one.
        db.session.execute(
            update(PasswordResetToken)
            .where(PasswordResetToken.account_id == account_id, PasswordResetToken.used_at.is_(None))
            .values(used_at=ts)
            .execution_options(synchronize_session=False)
        )
    return account_id
