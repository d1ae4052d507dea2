"""Accounts and families: registration, authentication, password changes. Add to the session; never commit."""

from __future__ import annotations

import uuid

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import joinedload

from .. import mailer
from ..clock import now
from ..errors import APIError
from ..extensions import db
from ..models import Account, Family
from ..password.hashing import passwords, policy_violation
from ..tokens.access import PRINCIPAL_COLUMNS, Principal, children_column
from ..verification import service as verification


def normalise_email(email: str) -> str:
    return email.strip().lower()


def find_by_email(email: str) -> Account | None:
    stmt = select(Account).options(joinedload(Account.family)).where(Account.email == normalise_email(email))
    return db.session.scalar(stmt)


def check_password_policy(password: str, email: str | None) -> None:
    reason = policy_violation(password, email)
    if reason:
        raise APIError.weak_password(reason)


def register_parent(email: str, password: str, display_name: str, family_name: str | None, time_zone: str) -> bool:
    """Create a family and its first parent; return False (after equal work) if the e-mail is taken.

    Both branches hash the password and send one e-mail, so the response and its timing do not reveal the account.
    """
    email = normalise_email(email)
    check_password_policy(password, email)
    hashed = passwords().hash(password)
    if find_by_email(email) is not None:
        mailer.send(email, "StoryVerse: someone tried to register", _ALREADY_REGISTERED)
        return False
    ts = now()
    family = Family(id=uuid.uuid4(), name=family_name or f"{display_name}'s family", time_zone=time_zone, created_at=ts)
    account = Account(
        id=uuid.uuid4(),
        family=family,
        email=email,
        password_hash=hashed,
        role="parent",
        display_name=display_name,
        created_at=ts,
        password_changed_at=ts,
    )
    db.session.add_all([family, account])
    verification.issue(
        account, "Welcome to StoryVerse", _WELCOME, new_account=True
    )  # the welcome mail carries the verify link
    return True


def authenticate(email: str, password: str) -> Account | None:
    """Return the account if the password matches; unknown accounts verify against a dummy hash (equal timing)."""
    account = find_by_email(email)
    hasher = passwords()
    if not hasher.verify(account.password_hash if account else None, password):
        return None
    assert account is not None and account.password_hash is not None
    if hasher.needs_rehash(account.password_hash):
        account.password_hash = hasher.hash(password)
    return account


# /login's one statement: the stored hash, the token's subject and (for a parent) the ``children`` claim.
_SIGN_IN = select(Account.password_hash, *PRINCIPAL_COLUMNS, children_column()).where(
    Account.email == bindparam("email"), Account.family_id == Family.id
)


def sign_in(email: str, password: str) -> Principal | None:
    """``authenticate`` for /login: the access token's subject if the password matches, else None (unknown accounts
    verify the dummy hash: equal work).

    One statement outside a transaction (no BEGIN or COMMIT round trip, no connection held during argon2, nothing
    left to commit) reads everything the token needs, ``children`` included; psycopg2 adds one short ``SET
    default_transaction_isolation TO DEFAULT`` when the connection returns to the pool (SQLAlchemy resets the
    isolation level after every AUTOCOMMIT use). A hash made with older argon2 parameters is replaced in a durable
    transaction of its own, and only if the password did not change meanwhile.
    """
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        row = conn.execute(_SIGN_IN, {"email": normalise_email(email)}).first()
    hasher = passwords()
    if not hasher.verify(row[0] if row else None, password):
        return None
    assert row is not None
    stored, *fields, children = row
    if hasher.needs_rehash(stored):
        _rehash(fields[0], stored, hasher.hash(password))
    return Principal(*fields, children=[str(c) for c in children] if fields[1] == "parent" else None)


def _rehash(account_id: uuid.UUID, old_hash: str, new_hash: str) -> None:
    with db.engine.begin() as conn:
        conn.execute(
            update(Account)
            .where(Account.id == account_id, Account.password_hash == old_hash)
            .values(password_hash=new_hash)
        )


def set_password(account: Account, new_password: str) -> None:
    check_password_policy(new_password, account.email)
    account.password_hash = passwords().hash(new_password)
    account.password_changed_at = now()
    if account.email:
        mailer.send(account.email, "Your StoryVerse password was changed", _CHANGED)


_ALREADY_REGISTERED = (
    "Someone tried to create a StoryVerse account with this address, which already has one.\n"
    "If it was you, sign in or reset your password. Otherwise you can ignore this message.\n"
)
_WELCOME = "Welcome to StoryVerse! Your family account is ready.\n"
_CHANGED = (
    "The password of your StoryVerse account was changed and every device was signed out.\n"
    "If this was not you, reset your password now.\n"
)
