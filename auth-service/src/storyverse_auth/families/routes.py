"""The caller's family, co-parent invitations and joining a family by invitation."""

from __future__ import annotations

import logging

from apiflask import APIBlueprint

from ..auth.bearer import bearer, current_claims
from ..children import service as children
from ..extensions import db
from ..schemas import AcceptedOut, TokenOut
from ..tokens import responses as token_responses
from . import service as families
from .schemas import FamilyDetailOut, InviteIn, JoinIn

bp = APIBlueprint("families", __name__, url_prefix="/api/auth/family", tag="Family")

log = logging.getLogger(__name__)

INVITE_ACCEPTED = {"status": "accepted", "detail": "An invitation to join your family has been sent."}


@bp.get("")
@bp.auth_required(bearer)
@bp.output(FamilyDetailOut)
@bp.doc(summary="The caller's family: code, parents and children (parents only)", responses=[401, 403])
def get_family():
    parent = families.require_parent(current_claims())
    family = parent.family
    return {
        "id": str(family.id),
        "name": family.name,
        "tier": family.tier,
        "time_zone": family.time_zone,
        "family_code": family.family_code,
        "parents": [
            {"id": str(p.id), "display_name": p.display_name, "email": p.email} for p in families.parents_of(family.id)
        ],
        "children": [
            {
                "id": str(c.id),
                "display_name": c.display_name,
                "username": c.username,
                "active": c.consented_at is not None,
            }
            for c in children.list_children(family.id)
        ],
    }


@bp.post("/invitations")
@bp.auth_required(bearer)
@bp.input(InviteIn, arg_name="body")
@bp.output(AcceptedOut, status_code=202)
@bp.doc(
    summary="Invite a co-parent by e-mail (single-use link, 7 days; a new invitation replaces the last)",
    responses=[401, 403, 409, 422],
)
def invite(body: dict):
    parent = families.require_parent(current_claims())
    families.invite(parent, body["email"])
    db.session.commit()
    log.info("family invite", extra={"event": "family_invite", "account_id": str(parent.id)})
    return INVITE_ACCEPTED


@bp.post("/join")
@bp.input(JoinIn, arg_name="body")
@bp.output(TokenOut, status_code=201)
@bp.doc(
    summary="Accept an invitation: create the co-parent's account in the family and sign in", responses=[400, 409, 422]
)
def join(body: dict):
    # A refusal (weak password, taken e-mail) raises before the commit: the invitation stays usable.
    account = families.join(body["token"], body["password"], body["display_name"])
    response = token_responses.new_session(account)
    db.session.commit()
    log.info("family join", extra={"event": "family_join", "account_id": str(account.id)})
    return response
