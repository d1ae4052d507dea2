"""Admin client registry: create, list, rotate the secret of, disable. Admin bearer tokens only.

A client secret appears exactly once: in the answer to create (confidential clients) or rotate-secret.
"""

from __future__ import annotations

import logging

from apiflask import Schema
from apiflask.fields import Boolean, List, Nested, String
from apiflask.validators import Length, OneOf, Regexp

from ..auth.bearer import bearer, current_claims
from ..errors import APIError
from ..extensions import db
from . import admin_bp as bp
from . import clients
from .models import CLIENT_TYPES, GRANT_TYPES
from .scopes import SCOPES

log = logging.getLogger(__name__)
_CLIENT_ID = Regexp(r"^[A-Za-z0-9_-]{1,64}$", error="Not a client id.")


class ClientIn(Schema):
    client_name = String(required=True, validate=[Length(min=1, max=100), Regexp(r"^[^\x00-\x1f\x7f]*$")])
    client_type = String(required=True, validate=OneOf(CLIENT_TYPES))
    redirect_uris = List(String(validate=Length(min=1, max=512)), load_default=list, validate=Length(max=10))
    grant_types = List(String(validate=OneOf(GRANT_TYPES)), required=True, validate=Length(min=1, max=3))
    scopes = List(String(validate=OneOf(SCOPES)), load_default=lambda: list(SCOPES), validate=Length(max=3))


class ClientOut(Schema):
    client_id = String(required=True)
    client_name = String(required=True)
    client_type = String(required=True)
    token_endpoint_auth_method = String(required=True)
    redirect_uris = List(String(), required=True)
    grant_types = List(String(), required=True)
    scopes = List(String(), required=True)
    created_at = String(required=True)
    secret_rotated_at = String(allow_none=True)
    disabled = Boolean(required=True)


class ClientCreatedOut(ClientOut):
    client_secret = String(allow_none=True, metadata={"description": "Shown once; null for public clients."})


class ClientDisabledOut(ClientOut):
    """The disabled client (a subclass: a schema used both nested and top level is registered twice)."""


class ClientListOut(Schema):
    clients = List(Nested(ClientOut), required=True)


class SecretOut(Schema):
    client_id = String(required=True)
    client_secret = String(required=True, metadata={"description": "Shown once."})


def _require_admin() -> None:
    if current_claims().get("role") != "admin":
        raise APIError(403, "admin_only", "Only an administrator can manage OAuth clients.")


def _client(client_id: str):
    if not _CLIENT_ID.regex.match(client_id):
        raise APIError(404, "client_not_found", "No such OAuth client.")
    return clients.get(client_id)


@bp.post("")
@bp.auth_required(bearer)
@bp.input(ClientIn, arg_name="body")
@bp.output(ClientCreatedOut, status_code=201)
@bp.doc(summary="Register an OAuth client (the secret is shown once)", responses=[401, 403, 422])
def create_client(body: dict):
    _require_admin()
    try:
        created = clients.create(
            body["client_name"], body["client_type"], body["redirect_uris"], body["grant_types"], body["scopes"]
        )
    except clients.ClientError as exc:
        raise APIError(422, "invalid_client_metadata", str(exc)) from exc
    db.session.commit()
    log.info("oauth client created", extra={"event": "oauth_client_created", "client_id": created.client.client_id})
    return {**clients.describe(created.client), "client_secret": created.secret}


@bp.get("")
@bp.auth_required(bearer)
@bp.output(ClientListOut)
@bp.doc(summary="List OAuth clients (never their secrets)", responses=[401, 403])
def list_clients():
    _require_admin()
    return {"clients": [clients.describe(c) for c in clients.list_all()]}


@bp.post("/<client_id>/secret")
@bp.auth_required(bearer)
@bp.output(SecretOut)
@bp.doc(
    summary="Rotate a confidential client's secret (the old one stops working at once)", responses=[401, 403, 404, 409]
)
def rotate_client_secret(client_id: str):
    _require_admin()
    client = _client(client_id)
    try:
        secret = clients.rotate_secret(client)
    except clients.ClientError as exc:
        raise APIError(409, "public_client", str(exc)) from exc
    db.session.commit()
    log.info("oauth client secret rotated", extra={"event": "oauth_client_rotated", "client_id": client_id})
    return {"client_id": client.client_id, "client_secret": secret}


@bp.post("/<client_id>/disable")
@bp.auth_required(bearer)
@bp.output(ClientDisabledOut)
@bp.doc(summary="Disable a client and revoke every grant it holds", responses=[401, 403, 404])
def disable_client(client_id: str):
    _require_admin()
    client = _client(client_id)
    revoked = clients.disable(client)
    db.session.commit()
    log.info(
        "oauth client disabled", extra={"event": "oauth_client_disabled", "client_id": client_id, "count": revoked}
    )
    return clients.describe(client)
