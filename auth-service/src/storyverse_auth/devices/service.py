"""Child sign-in without e-mail: family code + username + PIN, and the RFC 8628 device authorization grant.

PIN guesses are throttled by the password back-off (auth/throttle.py) per (family code + username, IP) and
per IP; an unknown family or child verifies against the dummy hash so timing does not tell them apart. A correct PIN
on a profile without consent is refused (403) without a session.

Device grant: the device gets a high-entropy ``device_code`` (stored as an HMAC) and a short ``user_code``
(RFC 8628 §6.1: 8 consonants, ``BCDF-GHJK``); a parent approves the user code for one of their consented children;
the device polls, one row-locked transaction per poll: ``slow_down`` adds 5 s to the interval (§3.5), an approved
grant turns into a child session exactly once.
"""

from __future__ import annotations

import os
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from .. import secrets_box
from ..auth import throttle
from ..children import service as children
from ..clock import now
from ..errors import APIError
from ..extensions import db
from ..families import errors as family_errors
from ..models import Account, DeviceAuthorization, Family
from ..password.hashing import passwords

USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"  # no vowels: no words; RFC 8628 §6.1
USER_CODE_LENGTH = 8
# Each can be overridden in the app config (create_app({...})); the URI also from the environment.
DEVICE_CODE_TTL = 600
DEVICE_POLL_INTERVAL = 5
SLOW_DOWN_STEP = 5
VERIFICATION_URI = os.environ.get("DEVICE_VERIFICATION_URI", "http://localhost:3000/device")


def normalise_code(code: str) -> str:
    return "".join(c for c in code.upper() if c.isalnum())


def format_user_code(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"


# --- family code + username + PIN -------------------------------------------------------------------------------


def login_child(family_code: str, username: str, pin: str, ip: str) -> Account:
    code, name = normalise_code(family_code), children.normalise_username(username)
    subject = f"child:{code}:{name}"
    throttle.check(subject, ip)
    child = db.session.scalar(
        select(Account)
        .join(Family, Account.family_id == Family.id)
        .where(Family.family_code == code, Account.username == name, Account.role == "child")
    )
    hasher = passwords()
    if not hasher.verify(child.pin_hash if child else None, pin):
        throttle.record_failure(subject, ip, reason="bad_pin")
        raise family_errors.invalid_child_credentials()
    assert child is not None and child.pin_hash is not None
    throttle.record_success(subject, ip)
    if child.consented_at is None:
        raise family_errors.profile_inactive()
    if hasher.needs_rehash(child.pin_hash):
        child.pin_hash = hasher.hash(pin)
    return child


# --- RFC 8628 ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceCode:
    device_code: str
    user_code: str
    verification_uri: str
    expires_in: int
    interval: int


def _device_hash(device_code: str) -> str:
    return secrets_box.token_mac(f"device:{device_code}")


def start(client_name: str | None) -> DeviceCode:
    cfg = current_app.config
    ttl = int(cfg.get("DEVICE_CODE_TTL", DEVICE_CODE_TTL))
    interval = int(cfg.get("DEVICE_POLL_INTERVAL", DEVICE_POLL_INTERVAL))
    ts = now()
    # Expired grants are useless after their last answer (expired_token); drop them so user codes can recur.
    db.session.execute(delete(DeviceAuthorization).where(DeviceAuthorization.expires_at < ts - timedelta(hours=1)))
    device_code = secrets.token_urlsafe(32)
    for _ in range(5):
        user_code = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))
        row = DeviceAuthorization(
            device_code_hash=_device_hash(device_code),
            user_code=user_code,
            status="pending",
            client_name=client_name,
            created_at=ts,
            expires_at=ts + timedelta(seconds=ttl),
            interval=interval,
            next_poll_at=ts,
        )
        try:
            with db.session.begin_nested():
                db.session.add(row)
        except IntegrityError:  # a live grant already shows this user code (20^8 codes): draw again
            continue
        uri = cfg.get("DEVICE_VERIFICATION_URI", VERIFICATION_URI)
        return DeviceCode(device_code, format_user_code(user_code), uri, ttl, interval)
    raise APIError.unavailable("Could not allocate a device code; retry.")  # pragma: no cover


def _pending(user_code: str, parent: Account, ip: str) -> DeviceAuthorization:
    """The live, undecided grant showing ``user_code`` (user codes are guessable: throttled per parent and IP)."""
    subject = f"device:{parent.id}"
    throttle.check(subject, ip)
    row = db.session.scalar(
        select(DeviceAuthorization)
        .where(
            DeviceAuthorization.user_code == normalise_code(user_code),
            DeviceAuthorization.status == "pending",
            DeviceAuthorization.expires_at > now(),
        )
        .with_for_update()
    )
    if row is None:
        throttle.record_failure(subject, ip, reason="bad_user_code")
        raise family_errors.invalid_user_code()
    return row


def approve(parent: Account, user_code: str, child_id: uuid.UUID, ip: str) -> None:
    row = _pending(user_code, parent, ip)
    child = children.get_child(parent, child_id)
    if child.consented_at is None:
        raise family_errors.consent_required()
    row.status, row.child_id, row.decided_by, row.decided_at = "approved", child.id, parent.id, now()


def deny(parent: Account, user_code: str, ip: str) -> None:
    row = _pending(user_code, parent, ip)
    row.status, row.decided_by, row.decided_at = "denied", parent.id, now()


@dataclass(frozen=True)
class Poll:
    child: Account | None
    error: APIError | None = None


def poll(device_code: str) -> Poll:
    """One poll. The caller commits (the poll time and a slowed interval must stick), then raises ``error``."""
    row = db.session.scalar(
        select(DeviceAuthorization)
        .where(DeviceAuthorization.device_code_hash == _device_hash(device_code))
        .with_for_update()
    )
    ts = now()
    if row is None or row.status == "consumed":
        return Poll(None, family_errors.device_error("invalid_grant"))
    if ts >= row.expires_at:
        return Poll(None, family_errors.device_error("expired_token"))
    if ts < row.next_poll_at:
        row.interval += SLOW_DOWN_STEP
        row.next_poll_at = ts + timedelta(seconds=row.interval)
        return Poll(None, family_errors.device_error("slow_down"))
    row.next_poll_at = ts + timedelta(seconds=row.interval)
    if row.status == "pending":
        return Poll(None, family_errors.device_error("authorization_pending"))
    child = db.session.get(Account, row.child_id) if row.child_id else None
    if row.status == "denied" or child is None or child.consented_at is None:
        return Poll(None, family_errors.device_error("access_denied"))
    row.status = "consumed"
    return Poll(child)
