"""Issue, list and revoke API keys (parents and admins), and exchange a key for a short-lived access token."""

from __future__ import annotations

import logging
import uuid

from apiflask import APIBlueprint, APIKeyHeaderAuth
from storyverse_contracts.identity import ADMIN

from ..auth.bearer import bearer, current_claims
from ..errors import APIError
from ..extensions import db
from ..mfa import service as mfa
from ..models import Account
from . import errors, service
from .guard import refuse_api_key_tokens
from .schemas import ApiKeyCreatedOut, ApiKeyIn, ApiKeyPlanOut, ApiKeysOut, ExchangeIn, ExchangeOut, PlanIn

bp = APIBlueprint("apikeys", __name__, url_prefix="/api/auth/api-keys", tag="API keys")
admin_bp = APIBlueprint("apikeys_admin", __name__, url_prefix="/api/auth/admin/api-keys", tag="API keys")

bp.before_app_request(refuse_api_key_tokens)

log = logging.getLogger(__name__)

api_key_auth = APIKeyHeaderAuth(
    scheme="ApiKey",
    param_name="Authorization",
    description="An API key: `Authorization: ApiKey svk_<id>_<secret>` (shown once at issuance).",
)


@api_key_auth.verify_token
def _verify_key(token: str):
    return service.authenticate(token or "")


def _key_uuid(key_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(key_id)
    except ValueError:
        raise errors.api_key_not_found() from None


def _owner() -> Account:
    claims = current_claims()
    if claims.get("role") not in service.OWNER_ROLES:
        raise errors.key_owner_only()
    account = db.session.get(Account, uuid.UUID(claims["sub"]))
    if account is None:
        raise APIError.token_revoked()
    if account.role not in service.OWNER_ROLES:
        raise errors.key_owner_only()
    return account


@bp.post("")
@bp.auth_required(bearer)
@bp.input(ApiKeyIn, arg_name="body")
@bp.output(ApiKeyCreatedOut, status_code=201)
@bp.doc(summary="Issue an API key (parents and admins); the key is in this response only", responses=[401, 403, 409])
def create_key(body: dict):
    owner = _owner()
    mfa.require_step_up(owner, current_claims())  # issue 20: a recent second factor when one is set up
    issued = service.issue(owner, body["name"], body["scopes"], body["plan"])
    db.session.commit()
    log.info(
        "api key issued",
        extra={"event": "api_key_issued", "account_id": str(owner.id), "key_id": str(issued.key.id)},
    )
    return {**service.to_dict(issued.key), "key": issued.plaintext}


@bp.get("")
@bp.auth_required(bearer)
@bp.output(ApiKeysOut)
@bp.doc(summary="The caller's API keys, revoked ones included (never their secret)", responses=[401, 403])
def list_keys():
    owner = _owner()
    return {"api_keys": [service.to_dict(k) for k in service.list_keys(owner.id)]}


@bp.delete("/<key_id>")  # a string, so DELETE /token is this route's 404, not the exchange route's 405
@bp.auth_required(bearer)
@bp.output({}, status_code=204)
@bp.doc(summary="Revoke an API key and every token exchanged from it", responses=[401, 403, 404])
def revoke_key(key_id: str):
    owner = _owner()
    if not service.revoke(owner.id, _key_uuid(key_id)):
        db.session.rollback()
        raise errors.api_key_not_found()
    db.session.commit()
    log.info("api key revoked", extra={"event": "api_key_revoked", "account_id": str(owner.id), "key_id": str(key_id)})
    return ""


@bp.post("/token")
@bp.auth_required(api_key_auth)
@bp.input(ExchangeIn, arg_name="body")
@bp.output(ExchangeOut)
@bp.doc(
    summary="Exchange an API key for a short-lived access token (tier/plan claims, scope, client_id = key id)",
    responses=[401, 403],
)
def exchange(body: dict):
    key, owner = api_key_auth.current_user
    scopes = service.narrow(key, body.get("scope"))
    issued = service.exchange(key, owner, scopes)
    db.session.commit()
    return {
        "access_token": issued.token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "scope": " ".join(scopes),
    }


@admin_bp.put("/<key_id>/plan")
@admin_bp.auth_required(bearer)
@admin_bp.input(PlanIn, arg_name="body")
@admin_bp.output(ApiKeyPlanOut)
@admin_bp.doc(
    summary="Assign a live API key's metering plan (administrators); its next token exchange carries it",
    responses=[401, 403, 404, 422],
)
def grant_plan(key_id: str, body: dict):
    claims = current_claims()
    admin = db.session.get(Account, uuid.UUID(claims["sub"])) if claims.get("role") == ADMIN else None
    if admin is None or admin.role != ADMIN:
        raise errors.admin_only()
    key = service.grant_plan(_key_uuid(key_id), body["plan"])
    if key is None:
        db.session.rollback()
        raise errors.api_key_not_found()
    db.session.commit()
    log.info(
        "api key plan granted",
        extra={"event": "api_key_plan_granted", "account_id": str(admin.id), "key_id": str(key.id), "plan": key.plan},
    )
    return service.to_dict(key)
