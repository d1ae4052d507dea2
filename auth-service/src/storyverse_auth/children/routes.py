"""Child profiles, managed by the parents of their family only (another family's child is a 404)."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from apiflask import APIBlueprint
from flask import request

from ..auth.bearer import bearer, current_claims
from ..extensions import db
from ..families import service as families
from ..families.schemas import ChildCreatedOut, ChildCreateIn, ChildOut, ChildPatchIn, ChildrenOut, ConsentIn, PinIn
from ..mfa import service as mfa
from ..models import Account
from ..schemas import SessionsOut
from ..sessions import service as sessions
from ..tokens import responses as token_responses
from ..verification import service as verification
from . import service as children

bp = APIBlueprint("children", __name__, url_prefix="/api/auth/children", tag="Children")

log = logging.getLogger(__name__)


def _child_out(child: Account) -> dict[str, Any]:
    claims = children.effective(child)
    stored = children.stored_controls(child)
    consent = children.latest_consent(child.id) if child.consented_at else None
    return {
        "id": str(child.id),
        "display_name": child.display_name,
        "username": child.username or "",
        "birth_year": child.birth_year,
        "age_band": claims.age_band,
        "content_rating": claims.content_rating,
        "active": child.consented_at is not None,
        "has_pin": child.pin_hash is not None,
        "consent": None
        if consent is None
        else {
            "consented_at": consent.created_at,
            "policy_version": consent.policy_version,
            "agreed": consent.agreed,
            "method": consent.method,
        },
        "controls": {
            "max_content_rating": stored.max_content_rating,
            "daily_story_limit": stored.daily_story_limit,
            "allowed_hours": stored.allowed_hours,
            "features": list(stored.features),
        },
        "created_at": child.created_at,
    }


def _parent_and_child(child_id: uuid.UUID) -> tuple[Account, Account]:
    parent = families.require_parent(current_claims())
    return parent, children.get_child(parent, child_id)


def _audit(event: str, parent: Account, child_id: uuid.UUID, **extra: Any) -> None:
    """Audit line (allow-listed fields only): the acting parent is ``account_id``, the child is ``subject``."""
    log.info(event, extra={"event": event, "account_id": str(parent.id), "subject": str(child_id), **extra})


@bp.get("")
@bp.auth_required(bearer)
@bp.output(ChildrenOut)
@bp.doc(summary="The family's child profiles (parents only)", responses=[401, 403])
def list_children():
    parent = families.require_parent(current_claims())
    return {"children": [_child_out(c) for c in children.list_children(parent.family_id)]}


@bp.post("")
@bp.auth_required(bearer)
@bp.input(ChildCreateIn, arg_name="body")
@bp.output(ChildCreatedOut, status_code=201)
@bp.doc(
    summary="Create a child profile (inactive until consent); the response carries a fresh access token for the "
    "caller whose `children` claim includes the new child",
    responses=[401, 403, 409, 422],
)
def create_child(body: dict):
    claims = current_claims()
    parent = families.require_parent(claims)
    verification.require_verified(parent)
    child = children.create_child(parent, body)
    out = _child_out(child)
    out["caller_token"] = token_responses.for_current_session(parent, claims)
    db.session.commit()
    _audit("child_created", parent, child.id)
    return out


@bp.get("/<uuid:child_id>")
@bp.auth_required(bearer)
@bp.output(ChildOut)
@bp.doc(summary="One child profile of the caller's family", responses=[401, 403, 404])
def get_child(child_id: uuid.UUID):
    _, child = _parent_and_child(child_id)
    return _child_out(child)


@bp.patch("/<uuid:child_id>")
@bp.auth_required(bearer)
@bp.input(ChildPatchIn, arg_name="body")
@bp.output(ChildOut)
@bp.doc(
    summary="Change a child profile or its parental controls; a tightening change signs the child out (loosening "
    "applies at the child's next refresh); a birth-year change needs the parent's password",
    responses=[401, 403, 404, 409, 422, 429],
)
def patch_child(child_id: uuid.UUID, body: dict):
    parent, child = _parent_and_child(child_id)
    if "birth_year" in body:
        families.reauthenticate(parent, body["current_password"], request.remote_addr or "unknown")
    tightened = children.update_child(child, body)
    out = _child_out(child)
    db.session.commit()
    _audit("child_updated", parent, child_id, outcome="tightened" if tightened else "updated")
    return out


@bp.delete("/<uuid:child_id>")
@bp.auth_required(bearer)
@bp.output({}, status_code=204)
@bp.doc(summary="Delete a child profile and its data; revokes its sessions", responses=[401, 403, 404])
def delete_child(child_id: uuid.UUID):
    parent, child = _parent_and_child(child_id)
    mfa.require_step_up(parent, current_claims())
    revoked = children.delete_child(child)
    db.session.commit()
    _audit("child_deleted", parent, child_id, count=revoked)
    return ""


@bp.put("/<uuid:child_id>/pin")
@bp.auth_required(bearer)
@bp.input(PinIn, arg_name="body")
@bp.output({}, status_code=204)
@bp.doc(summary="Set the child's PIN (4-8 digits); signs the child out everywhere", responses=[401, 403, 404, 422])
def set_pin(child_id: uuid.UUID, body: dict):
    parent, child = _parent_and_child(child_id)
    revoked = children.set_pin(child, body["pin"])
    db.session.commit()
    _audit("child_pin_set", parent, child_id, count=revoked)
    return ""


@bp.post("/<uuid:child_id>/consent")
@bp.auth_required(bearer)
@bp.input(ConsentIn, arg_name="body")
@bp.output(ChildOut, status_code=201)
@bp.doc(
    summary="Record parental consent (policy version, what was agreed; needs the parent's password): activates "
    "the profile",
    responses=[401, 403, 404, 422, 429],
)
def record_consent(child_id: uuid.UUID, body: dict):
    parent, child = _parent_and_child(child_id)
    verification.require_verified(parent)
    mfa.require_step_up(parent, current_claims())
    families.reauthenticate(parent, body["password"], request.remote_addr or "unknown")
    children.record_consent(parent, child, body["policy_version"], body["agreed"])
    db.session.flush()
    out = _child_out(child)
    db.session.commit()
    _audit("child_consent", parent, child_id)
    return out


@bp.get("/<uuid:child_id>/sessions")
@bp.auth_required(bearer)
@bp.output(SessionsOut)
@bp.doc(summary="The child's live sessions (devices)", responses=[401, 403, 404])
def list_child_sessions(child_id: uuid.UUID):
    _, child = _parent_and_child(child_id)
    return {
        "sessions": [
            {
                "id": str(s.id),
                "created_at": s.created_at,
                "last_used_at": s.last_used_at,
                "expires_at": s.expires_at,
                "user_agent": s.user_agent,
                "ip": s.ip,
                "current": False,
            }
            for s in sessions.live_sessions(child.id)
        ]
    }


@bp.delete("/<uuid:child_id>/sessions")
@bp.auth_required(bearer)
@bp.output({}, status_code=204)
@bp.doc(summary="Sign the child out of every device", responses=[401, 403, 404])
def delete_child_sessions(child_id: uuid.UUID):
    parent, child = _parent_and_child(child_id)
    revoked = sessions.revoke_all(child.id, "revoked_by_parent")
    db.session.commit()
    _audit("child_sessions_revoked", parent, child_id, count=revoked)
    return ""
