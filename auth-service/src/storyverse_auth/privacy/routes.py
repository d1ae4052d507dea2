"""Consent withdrawal, the family's export, and the parent's account deletion (with its cancellation)."""

from __future__ import annotations

import logging
import uuid

import click
from apiflask import APIBlueprint
from flask import request

from ..auth.bearer import bearer, current_claims
from ..children import service as children
from ..extensions import db
from ..families import service as families
from ..mfa import service as mfa
from . import service
from .schemas import DeletionIn, DeletionOut, ExportOut

bp = APIBlueprint("privacy", __name__, url_prefix="/api/auth", tag="Privacy", cli_group="privacy")

log = logging.getLogger(__name__)


@bp.delete("/children/<uuid:child_id>/consent")
@bp.auth_required(bearer)
@bp.output({}, status_code=204)
@bp.doc(
    summary="Withdraw parental consent: the profile is inactive again and the child is signed out everywhere "
    "(needs a recent second factor when one is set up)",
    responses=[401, 403, 404, 409],
)
def withdraw_consent(child_id: uuid.UUID):
    claims = current_claims()
    parent = families.require_parent(claims)
    child = children.get_child(parent, child_id)
    mfa.require_step_up(parent, claims)
    revoked = service.withdraw_consent(parent, child)
    db.session.commit()
    log.info(
        "consent withdrawn",
        extra={
            "event": "child_consent_withdrawn",
            "account_id": str(parent.id),
            "subject": str(child_id),
            "count": revoked,
        },
    )
    return ""


@bp.get("/account/export")
@bp.auth_required(bearer)
@bp.output(ExportOut)
@bp.doc(summary="Everything this service holds about the parent's family, as JSON (parents only)", responses=[401, 403])
def export():
    parent = families.require_parent(current_claims())
    log.info("data export", extra={"event": "data_export", "account_id": str(parent.id)})
    return service.export(parent)


@bp.post("/account/deletion")
@bp.auth_required(bearer)
@bp.input(DeletionIn, arg_name="body")
@bp.output(DeletionOut, status_code=202)
@bp.doc(
    summary="Delete the parent's account (the family with its last parent) after a grace period; signs out "
    "everything now (needs the password, and a recent second factor when one is set up)",
    responses=[401, 403, 409, 429],
)
def request_deletion(body: dict):
    claims = current_claims()
    parent = families.require_parent(claims)
    mfa.require_step_up(parent, claims)
    families.reauthenticate(parent, body["password"], request.remote_addr or "unknown")
    out = service.request_deletion(parent)
    db.session.commit()
    log.info("deletion requested", extra={"event": "account_deletion_requested", "account_id": str(parent.id)})
    return out


@bp.delete("/account/deletion")
@bp.auth_required(bearer)
@bp.output({}, status_code=204)
@bp.doc(summary="Cancel a pending account deletion (sign in again inside the grace period)", responses=[401, 403, 404])
def cancel_deletion():
    parent = families.require_parent(current_claims())
    service.cancel_deletion(parent)
    db.session.commit()
    log.info("deletion canceled", extra={"event": "account_deletion_canceled", "account_id": str(parent.id)})
    return ""


@bp.cli.command("purge")
def purge_command() -> None:
    """Hard-delete the accounts (and families) whose deletion grace period is over. Run it from cron."""
    count = service.purge_due()
    db.session.commit()
    click.echo(f"purged {count} account(s)")
