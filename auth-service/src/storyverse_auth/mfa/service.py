"""TOTP enrolment and verification, recovery codes, and the per-session step-up state. Add to the session; never
commit.

- The secret (160 bits, base32) is AES-GCM encrypted at rest (secrets_box, AAD = ``totp:<account id>``). Codes are
  6 digits, 30 s steps, ±1 step of clock drift, and each time step is accepted once (``last_step``).
- Ten recovery codes (``xxxx-xxxx-xxxx``, 48 random bits each, guessing throttled as below) are shown once and
  stored as ``HMAC(secret, "recovery:<code>")``; each works once; regenerating replaces them all.
- A verified second factor marks the *session*: Redis ``sv:auth:v1:mfa:sid:<sid>`` = the time of the check, kept for
  the session's absolute lifetime. Tokens of that session carry ``amr: ["pwd", "otp", "mfa"]`` (RFC 8176); a
  sensitive action needs the check to be at most ``MFA_STEP_UP_SECONDS`` (600) old when the parent has a confirmed
  factor, else ``401 mfa_required`` with RFC 9470's ``insufficient_user_authentication`` challenge. No factor, no
  step-up (the password re-entry the actions already ask for stays the check). Redis down: the error handler's 503.
- Failed codes are throttled per (account, IP) and per IP with the login back-off (auth/throttle.py), and per
  account: ``MFA_MAX_FAILURES`` (10) in ``MFA_FAILURE_WINDOW`` (900 s) locks codes out until the window passes.
"""

from __future__ import annotations

import base64
import hmac
import io
import secrets
import uuid
from typing import Any

import pyotp
import segno
from flask import current_app
from sqlalchemy import delete, func, select, update

from .. import secrets_box
from ..auth import throttle
from ..clock import now, now_ts
from ..errors import APIError
from ..extensions import db, redis_store
from ..models import Account
from .models import RecoveryCode, TotpFactor

ISSUER_NAME = "StoryVerse"
RECOVERY_CODES = 10
STEP_UP_SECONDS = 600
MAX_FAILURES = 10
FAILURE_WINDOW = 900
_KEY = "sv:auth:v1:mfa:"


def _setting(name: str, default: Any) -> Any:
    return current_app.config.get(name, default)


def _aad(account_id: uuid.UUID) -> bytes:
    return f"totp:{account_id}".encode()


def _recovery_hash(code: str) -> str:
    return secrets_box.token_mac(f"recovery:{code.strip().lower().replace(' ', '')}")


def factor(account_id: uuid.UUID) -> TotpFactor | None:
    return db.session.get(TotpFactor, account_id)


def enabled(account_id: uuid.UUID) -> bool:
    found = factor(account_id)
    return found is not None and found.confirmed_at is not None


def status(account: Account) -> dict[str, Any]:
    left = db.session.scalar(
        select(func.count()).where(RecoveryCode.account_id == account.id, RecoveryCode.used_at.is_(None))
    )
    return {"totp": enabled(account.id), "recovery_codes_left": int(left or 0)}


# -- enrolment ---------------------------------------------------------------------------------------------------


def begin(account: Account) -> dict[str, str]:
    """A new pending secret (replacing a pending one); 409 when a confirmed factor exists."""
    if enabled(account.id):
        raise APIError(409, "mfa_already_enabled", "A second factor is already set up; remove it first.")
    secret = pyotp.random_base32(32)
    pending = factor(account.id)
    if pending is None:
        pending = TotpFactor(account_id=account.id)
        db.session.add(pending)
    pending.secret_encrypted = secrets_box.encrypt(secret.encode(), _aad(account.id))
    pending.created_at, pending.confirmed_at, pending.last_step = now(), None, None
    uri = pyotp.TOTP(secret).provisioning_uri(name=account.email or str(account.id), issuer_name=ISSUER_NAME)
    return {"secret": secret, "otpauth_uri": uri, "qr_svg_data_uri": _qr(uri)}


def _qr(uri: str) -> str:
    out = io.BytesIO()
    segno.make(uri, error="m").save(out, kind="svg", scale=4, border=2)
    return "data:image/svg+xml;base64," + base64.b64encode(out.getvalue()).decode()


def confirm(account: Account, code: str, ip: str) -> list[str]:
    """Confirm the pending factor with a first code; returns the recovery codes (shown once)."""
    pending = factor(account.id)
    if pending is None or pending.confirmed_at is not None:
        raise APIError(409, "mfa_not_pending", "Start the set-up first.")
    _check_code(account, pending, code, ip)
    pending.confirmed_at = now()
    return new_recovery_codes(account)


def new_recovery_codes(account: Account) -> list[str]:
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.account_id == account.id))
    codes = ["-".join(secrets.token_hex(2) for _ in range(3)) for _ in range(RECOVERY_CODES)]
    ts = now()
    db.session.add_all(RecoveryCode(code_hash=_recovery_hash(c), account_id=account.id, created_at=ts) for c in codes)
    return codes


def remove(account: Account) -> None:
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.account_id == account.id))
    db.session.execute(delete(TotpFactor).where(TotpFactor.account_id == account.id))


# -- verification ------------------------------------------------------------------------------------------------


def _throttle_check(account: Account, ip: str) -> None:
    throttle.check(f"mfa:{account.id}", ip)
    failures = redis_store.client.get(f"{_KEY}fail:{account.id}")
    if failures is not None and int(failures) >= int(_setting("MFA_MAX_FAILURES", MAX_FAILURES)):
        raise APIError.throttled(int(redis_store.client.ttl(f"{_KEY}fail:{account.id}")))


def _fail(account: Account, ip: str) -> APIError:
    throttle.record_failure(f"mfa:{account.id}", ip, reason="bad_mfa_code")
    key = f"{_KEY}fail:{account.id}"
    if redis_store.client.incr(key) == 1:
        redis_store.client.expire(key, int(_setting("MFA_FAILURE_WINDOW", FAILURE_WINDOW)))
    return APIError(401, "invalid_mfa_code", "The code is incorrect, expired or already used.")


def _matching_step(secret: str, code: str) -> int | None:
    totp = pyotp.TOTP(secret)
    current = int(now_ts()) // totp.interval
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def _check_code(account: Account, found: TotpFactor, code: str, ip: str) -> None:
    _throttle_check(account, ip)
    secret = secrets_box.decrypt(found.secret_encrypted, _aad(account.id)).decode()
    step = _matching_step(secret, code)
    if step is None or (found.last_step is not None and step <= found.last_step):
        raise _fail(account, ip)
    # One conditional UPDATE: two requests with the same code cannot both pass.
    won = db.session.execute(
        update(TotpFactor)
        .where(
            TotpFactor.account_id == account.id,
            (TotpFactor.last_step.is_(None)) | (TotpFactor.last_step < step),
        )
        .values(last_step=step)
        .returning(TotpFactor.account_id)
        .execution_options(synchronize_session=False)
    ).first()
    if won is None:
        raise _fail(account, ip)
    throttle.record_success(f"mfa:{account.id}", ip)
    db.session.refresh(found)


def verify(account: Account, code: str | None, recovery_code: str | None, ip: str) -> str:
    """Check a TOTP code or a recovery code; returns the method ("otp" or "recovery")."""
    found = factor(account.id)
    if found is None or found.confirmed_at is None:
        raise APIError(409, "mfa_not_enabled", "No second factor is set up for this account.")
    if code is not None:
        _check_code(account, found, code, ip)
        return "otp"
    _throttle_check(account, ip)
    used = db.session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.code_hash == _recovery_hash(recovery_code or ""),
            RecoveryCode.account_id == account.id,
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=now())
        .returning(RecoveryCode.code_hash)
        .execution_options(synchronize_session=False)
    ).first()
    if used is None:
        raise _fail(account, ip)
    return "recovery"


# -- the session's step-up state ---------------------------------------------------------------------------------


def mark_session(session_id: str) -> None:
    ttl = int(current_app.config["SESSION_ABSOLUTE_TTL"])
    redis_store.client.set(f"{_KEY}sid:{session_id}", str(int(now_ts())), ex=ttl)


def verified_at(session_id: str) -> int | None:
    value = redis_store.client.get(f"{_KEY}sid:{session_id}")
    return int(value) if value is not None else None


def amr(session_id: str) -> list[str]:
    """RFC 8176 methods of a parent's or admin's session: the password, plus the second factor once checked."""
    return ["pwd", "otp", "mfa"] if verified_at(session_id) is not None else ["pwd"]


def require_step_up(account: Account, claims: dict[str, Any]) -> None:
    """401 ``mfa_required`` unless the parent has no factor or checked it on this session recently."""
    if not enabled(account.id):
        return
    max_age = int(_setting("MFA_STEP_UP_SECONDS", STEP_UP_SECONDS))
    at = verified_at(str(claims.get("sid", "")))
    if at is not None and now_ts() - at <= max_age:
        return
    raise APIError(
        401,
        "mfa_required",
        "Confirm it's you: enter a code from your authenticator app (POST /api/auth/mfa/verify), then retry.",
        {"WWW-Authenticate": f'Bearer error="insufficient_user_authentication", max_age={max_age}'},
    )
