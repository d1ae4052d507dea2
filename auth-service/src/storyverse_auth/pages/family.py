"""The family page: the children (profile, controls, devices signed in, each with a revoke button), the plan and
its daily story allowance, today's story usage (the family's and each child's: usage.py), and the parent's
connected apps (with a disconnect button)."""

from __future__ import annotations

import logging
import uuid

from flask import g, request

from ..children import service as children
from ..children.controls import tier_limit
from ..errors import APIError
from ..extensions import db
from ..oauth import connected
from ..sessions import service as sessions
from . import bp, session, usage, views

log = logging.getLogger(__name__)


def _child_view(child) -> dict:
    claims, stored = children.effective(child), children.stored_controls(child)
    return {
        "id": str(child.id),
        "display_name": child.display_name,
        "username": child.username,
        "active": child.consented_at is not None,
        "age_band": claims.age_band,
        "content_rating": claims.content_rating,
        "daily_story_limit": claims.daily_story_limit,  # what the child's token carries: sv-quota enforces it
        "controls": stored,
        "sessions": sorted(sessions.live_sessions(child.id), key=lambda s: s.created_at),
    }


@bp.get("/family")
def family_page():
    parent = views.signed_in()
    if parent is None:
        return views.to_sign_in()
    family = parent.family
    kids = [_child_view(c) for c in children.list_children(family.id)]
    return views.page(
        "pages/family.html",
        family=family,
        allowance=tier_limit(family.tier),
        kids=kids,
        usage=usage.usage_today(family, kids),
        apps=connected.connected_apps(parent),
        notice={"session": "The device was signed out.", "app": "The app was disconnected."}.get(
            request.args.get("done", "")
        ),
    )


def _posted_parent():
    """The signed-in parent of a POST with a valid CSRF token, or None (the caller answers 403)."""
    parent = views.signed_in()
    if parent is None or not views.csrf_ok(session.csrf_token(g.sv_page_token)):
        return None
    return parent


def _form_uuid(name: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(request.form.get(name, ""))
    except ValueError:
        return None


@bp.post("/family/sessions/revoke")
def revoke_child_session():
    parent = _posted_parent()
    if parent is None:
        return views.csrf_refused()
    child_id, session_id = _form_uuid("child_id"), _form_uuid("session_id")
    try:
        child = children.get_child(parent, child_id) if child_id else None
    except APIError:
        child = None
    if child is None or session_id is None:
        return views.error_page(404, "Not found", "No such child or device in your family.")
    if not sessions.revoke_session(session_id, "revoked_by_parent", account_id=child.id):
        return views.error_page(404, "Not found", "That device is already signed out.")
    db.session.commit()
    log.info("page session revoke", extra={"event": "child_sessions_revoked", "account_id": str(parent.id)})
    return views.see_other("/parent/family?done=session")


@bp.post("/family/apps/revoke")
def revoke_app():
    parent = _posted_parent()
    if parent is None:
        return views.csrf_refused()
    app_id = _form_uuid("app_id")
    try:
        if app_id is None:
            raise APIError(404, "app_not_found", "No such connected app.")
        connected.disconnect(parent, app_id)
    except APIError:
        db.session.rollback()
        return views.error_page(404, "Not found", "No such connected app.")
    db.session.commit()
    log.info("page app revoke", extra={"event": "oauth_app_revoked", "account_id": str(parent.id)})
    return views.see_other("/parent/family?done=app")
