"""List and revoke the caller's own sessions (devices)."""

from __future__ import annotations

import uuid

from apiflask import APIBlueprint

from ..auth.bearer import bearer, current_claims
from ..errors import APIError
from ..extensions import db
from ..schemas import SessionsOut
from . import service as sessions

bp = APIBlueprint("sessions", __name__, url_prefix="/api/auth/sessions", tag="Sessions")


@bp.get("")
@bp.auth_required(bearer)
@bp.output(SessionsOut)
@bp.doc(summary="List this account's live sessions", responses=[401])
def list_sessions():
    claims = current_claims()
    rows = sessions.live_sessions(uuid.UUID(claims["sub"]))
    return {
        "sessions": [
            {
                "id": str(s.id),
                "created_at": s.created_at,
                "last_used_at": s.last_used_at,
                "expires_at": s.expires_at,
                "user_agent": s.user_agent,
                "ip": s.ip,
                "current": str(s.id) == claims["sid"],
            }
            for s in rows
        ]
    }


@bp.delete("/<uuid:session_id>")
@bp.auth_required(bearer)
@bp.output({}, status_code=204)
@bp.doc(summary="Revoke one of this account's sessions", responses=[401, 404])
def delete_session(session_id: uuid.UUID):
    claims = current_claims()
    if not sessions.revoke_session(session_id, "revoked_by_user", account_id=uuid.UUID(claims["sub"])):
        db.session.rollback()
        raise APIError.session_not_found()
    db.session.commit()
    return ""
