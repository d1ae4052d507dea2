"""Child profiles: create, read, change, delete, PIN, consent. Add to the session; never commit.

Every lookup is scoped to the parent's family in the query itself (``id AND family_id AND role``), so another
family's child is indistinguishable from a missing one (404). Changes that take anything away from the child
(a lower rating, fewer stories, fewer hours or features, a younger band) revoke the child's sessions; loosening
takes effect at the child's next refresh.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from ..clock import now
from ..extensions import db
from ..families import errors as family_errors
from ..models import Account, Consent, Family
from ..password.hashing import passwords
from ..sessions import service as sessions
from ..tokens.access import Principal
from . import controls

MAX_CHILDREN = 16  # per family; well under the 64 ids the parent's `children` claim can carry
CONSENT_METHOD = "parent_account_reauth"  # the parent signed in and re-entered the password


def normalise_username(username: str) -> str:
    return username.strip().lower()


def find_child(family_id: uuid.UUID, child_id: uuid.UUID) -> Account | None:
    stmt = select(Account).where(Account.id == child_id, Account.family_id == family_id, Account.role == "child")
    return db.session.scalar(stmt)


def get_child(parent: Account, child_id: uuid.UUID) -> Account:
    child = find_child(parent.family_id, child_id)
    if child is None:
        raise family_errors.child_not_found()
    return child


def list_children(family_id: uuid.UUID) -> list[Account]:
    stmt = (
        select(Account)
        .where(Account.family_id == family_id, Account.role == "child")
        .order_by(Account.created_at, Account.id)
    )
    return list(db.session.scalars(stmt))


def stored_controls(child: Account) -> controls.Controls:
    tier_limit = controls.tier_limit(child.family.tier)
    return controls.Controls(
        max_content_rating=child.max_content_rating or controls.CONTENT_RATINGS[0],
        daily_story_limit=tier_limit if child.daily_story_limit is None else child.daily_story_limit,
        allowed_hours=child.allowed_hours or controls.DEFAULT_ALLOWED_HOURS,
        features=tuple(child.features if child.features is not None else controls.DEFAULT_FEATURES),
    )


def effective(child: Account) -> controls.ChildClaims:
    """What the child's next access token will say (same computation as tokens/access.py)."""
    return Principal.of(child).child_controls()


def _check_birth_year(birth_year: int) -> None:
    year = now().year
    if not controls.birth_year_allowed(birth_year, year):
        raise family_errors.invalid_birth_year(year - controls.MAX_CHILD_AGE - 1, year)


def _check_pin(pin: str) -> None:
    digits = [int(c) for c in pin]
    steps = {b - a for a, b in itertools.pairwise(digits)}
    if len(steps) == 1 and steps <= {-1, 0, 1}:  # 0000, 1234, 4321
        raise family_errors.weak_pin()


def _merge_controls(base: controls.Controls, changes: dict[str, Any], tier: str) -> controls.Controls:
    merged = controls.Controls(
        max_content_rating=changes.get("max_content_rating", base.max_content_rating),
        daily_story_limit=changes.get("daily_story_limit", base.daily_story_limit),
        allowed_hours=changes.get("allowed_hours", base.allowed_hours),
        features=tuple(controls.ordered_features(changes.get("features", base.features))),
    )
    limit = controls.tier_limit(tier)
    if "daily_story_limit" in changes and merged.daily_story_limit > limit:
        raise family_errors.daily_limit_above_tier(limit)
    return merged


def _apply_controls(child: Account, new: controls.Controls) -> None:
    child.max_content_rating = new.max_content_rating
    child.daily_story_limit = new.daily_story_limit
    child.allowed_hours = new.allowed_hours
    child.features = list(new.features)


def _refresh_rating_columns(child: Account) -> None:
    """Keep the denormalised age_band / content_rating columns in step (tokens recompute them anyway)."""
    claims = effective(child)
    child.age_band, child.content_rating = claims.age_band, claims.content_rating


def _flush_unique_username() -> None:
    try:
        with db.session.begin_nested():
            db.session.flush()
    except IntegrityError as exc:
        raise family_errors.username_taken() from exc


def _username_free(family_id: uuid.UUID, username: str, except_id: uuid.UUID | None = None) -> bool:
    stmt = select(Account.id).where(Account.family_id == family_id, Account.username == username)
    found = db.session.scalar(stmt)
    return found is None or found == except_id


def create_child(parent: Account, data: dict[str, Any]) -> Account:
    family: Family = parent.family
    count = db.session.scalar(select(func.count()).where(Account.family_id == family.id, Account.role == "child"))
    if int(count or 0) >= MAX_CHILDREN:
        raise family_errors.child_limit_reached(MAX_CHILDREN)
    username = normalise_username(data["username"])
    if not _username_free(family.id, username):
        raise family_errors.username_taken()
    _check_birth_year(data["birth_year"])
    band = controls.age_band(data["birth_year"], now().year)
    defaults = controls.Controls(
        max_content_rating=controls.BAND_RATING[band],
        daily_story_limit=controls.tier_limit(family.tier),
        allowed_hours=controls.DEFAULT_ALLOWED_HOURS,
        features=controls.DEFAULT_FEATURES,
    )
    child = Account(
        id=uuid.uuid4(),
        family=family,
        role="child",
        display_name=data["display_name"],
        username=username,
        birth_year=data["birth_year"],
        created_at=now(),
    )
    _apply_controls(child, _merge_controls(defaults, data.get("controls") or {}, family.tier))
    if "pin" in data:
        _check_pin(data["pin"])
        child.pin_hash = passwords().hash(data["pin"])
    db.session.add(child)
    _refresh_rating_columns(child)
    _flush_unique_username()
    return child


def update_child(child: Account, data: dict[str, Any]) -> bool:
    """Apply a PATCH (the caller re-authenticated for a birth-year change); True if the child's sessions were revoked
    because the change tightened the controls."""
    old_controls, old_claims = stored_controls(child), effective(child)
    if "display_name" in data:
        child.display_name = data["display_name"]
    if "username" in data:
        username = normalise_username(data["username"])
        if not _username_free(child.family_id, username, except_id=child.id):
            raise family_errors.username_taken()
        child.username = username
    if "birth_year" in data:
        _check_birth_year(data["birth_year"])
        child.birth_year = data["birth_year"]
    new_controls = _merge_controls(old_controls, data.get("controls") or {}, child.family.tier)
    _apply_controls(child, new_controls)
    _refresh_rating_columns(child)
    _flush_unique_username()
    new_claims = effective(child)
    tightened = old_controls.tightened_by(new_controls) or (
        controls.AGE_BANDS.index(new_claims.age_band) < controls.AGE_BANDS.index(old_claims.age_band)
        or controls.rank(new_claims.content_rating) < controls.rank(old_claims.content_rating)
    )
    if tightened:
        sessions.revoke_all(child.id, "controls_tightened")
    return tightened


def set_pin(child: Account, pin: str) -> int:
    """Set the PIN (argon2id) and sign the child out everywhere; returns the number of sessions revoked."""
    _check_pin(pin)
    child.pin_hash = passwords().hash(pin)
    child.password_changed_at = now()
    return sessions.revoke_all(child.id, "pin_changed")


def delete_child(child: Account) -> int:
    """Revoke every session (denylisted for the gateway), then delete the profile; its sessions, consent records
    and device grants go with it (ON DELETE CASCADE)."""
    revoked = sessions.revoke_all(child.id, "child_deleted")
    db.session.delete(child)
    return revoked


def record_consent(parent: Account, child: Account, policy_version: str, agreed: list[str]) -> Consent:
    ts = now()
    consent = Consent(
        id=uuid.uuid4(),
        child_id=child.id,
        giver_id=parent.id,
        policy_version=policy_version,
        agreed=sorted(set(agreed)),
        method=CONSENT_METHOD,
        created_at=ts,
    )
    db.session.add(consent)
    child.consented_at = ts
    return consent


def latest_consent(child_id: uuid.UUID) -> Consent | None:
    stmt = select(Consent).where(Consent.child_id == child_id).order_by(Consent.created_at.desc()).limit(1)
    return db.session.scalar(stmt)
