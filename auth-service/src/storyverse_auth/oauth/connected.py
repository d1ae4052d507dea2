"""Connected apps: the third-party clients a parent has authorised (live OAuth grants), listed and revoked.

An app is one client with at least one live grant of the calling parent; revoking it revokes all of them (refresh
tokens dead, access tokens denylisted at the gateway by ``sid``). Only the parent's own grants are visible: a
co-parent's or another family's app id is a 404 (nothing confirms it exists), a child or an admin is a 403.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from apiflask import Schema
from apiflask.fields import DateTime, Integer, List, Nested, String

from ..auth.bearer import bearer, current_claims
from ..errors import APIError
from ..extensions import db
from ..families import service as families
from ..models import Account
from . import apps_bp as bp
from . import grants
from .models import OAuthClient

log = logging.getLogger(__name__)


class ConnectedAppOut(Schema):
    id = String(required=True, metadata={"description": "The app's id (revoke with DELETE .../{app_id})."})
    client_id = String(required=True)
    client_name = String(required=True)
    scopes = List(String(), required=True, metadata={"description": "Every scope granted (all grants together)."})
    connected_at = DateTime(required=True)
    last_used_at = DateTime(required=True)
    grants = Integer(required=True, metadata={"description": "Live authorisations (one per consent)."})


class ConnectedAppsOut(Schema):
    apps = List(Nested(ConnectedAppOut), required=True)


def connected_apps(account: Account) -> list[dict[str, Any]]:
    """The account's live grants grouped by client, in the order the apps were first connected."""
    apps: dict[uuid.UUID, dict[str, Any]] = {}
    for grant in grants.live_for_account(account.id):
        app = apps.get(grant.client_pk)
        if app is None:
            client = db.session.get(OAuthClient, grant.client_pk)
            if client is None or client.disabled_at is not None:
                continue
            app = apps[grant.client_pk] = {
                "id": str(client.id),
                "client_id": client.client_id,
                "client_name": client.client_name,
                "scopes": [],
                "connected_at": grant.created_at,
                "last_used_at": grant.last_used_at,
                "grants": 0,
            }
        app["grants"] += 1
        app["scopes"] += [s for s in grant.scope.split() if s not in app["scopes"]]
        app["last_used_at"] = max(app["last_used_at"], grant.last_used_at)
    return list(apps.values())


def disconnect(account: Account, app_id: uuid.UUID) -> int:
    """Revoke every live grant of ``account`` for the app; 404 when it has none (another parent's app too)."""
    revoked = grants.revoke_account(account.id, "revoked_by_parent", client_pk=app_id)
    if revoked == 0:
        raise APIError(404, "app_not_found", "No such connected app.")
    return revoked


@bp.get("")
@bp.auth_required(bearer)
@bp.output(ConnectedAppsOut)
@bp.doc(summary="The third-party apps the parent has connected (live OAuth grants)", responses=[401, 403])
def list_apps():
    parent = families.require_parent(current_claims())
    return {"apps": connected_apps(parent)}


@bp.delete("/<uuid:app_id>")
@bp.auth_required(bearer)
@bp.output({}, status_code=204)
@bp.doc(
    summary="Disconnect an app: revoke its refresh tokens and, at the gateway, its access tokens",
    responses=[401, 403, 404],
)
def revoke_app(app_id: uuid.UUID):
    parent = families.require_parent(current_claims())
    try:
        count = disconnect(parent, app_id)
    except APIError:
        db.session.rollback()
        raise
    db.session.commit()
    log.info("app disconnected", extra={"event": "oauth_app_revoked", "account_id": str(parent.id), "count": count})
    return ""
