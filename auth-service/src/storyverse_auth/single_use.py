"""Single-use tokens at rest (password reset, e-mail verification, family invitation): each row keeps an HMAC of
the token (``token_hash``), its expiry and when it was used. A token is spent by ONE conditional UPDATE, so of two
concurrent uses exactly one wins, and an expired or used token matches nothing. Adds to the session; never commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import update

from .extensions import db


def spend(model: Any, token_hash: str, ts: datetime, *columns: Any) -> Any:
    """Mark the unused, unexpired row of ``model`` with this hash used at ``ts``; its ``columns``, or None."""
    return db.session.execute(
        update(model)
        .where(model.token_hash == token_hash, model.used_at.is_(None), model.expires_at > ts)
        .values(used_at=ts)
        .returning(*columns)
        .execution_options(synchronize_session=False)
    ).first()
