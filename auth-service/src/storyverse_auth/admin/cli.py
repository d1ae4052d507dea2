"""``flask create-admin EMAIL``: the only way to make an administrator (no endpoint grants the role)."""

from __future__ import annotations

import uuid

import click
from apiflask import APIBlueprint

from ..auth.accounts import find_by_email, normalise_email
from ..clock import now
from ..extensions import db
from ..models import Account, Family
from ..password.hashing import passwords, policy_violation

# cli_group=None: `flask create-admin EMAIL` is a top-level command.
bp = APIBlueprint("admin", __name__, cli_group=None)


@bp.cli.command("create-admin")
@click.argument("email")
@click.option("--display-name", default="Administrator", show_default=True)
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    envvar="ADMIN_PASSWORD",
    help="Prompted for when not given (or read from $ADMIN_PASSWORD).",
)
def create_admin(email: str, display_name: str, password: str) -> None:
    """Create an administrator account (role admin, in its own operators family) that signs in at /login."""
    email = normalise_email(email)
    reason = policy_violation(password, email)
    if reason:
        raise click.ClickException(f"weak password: {reason}")
    if find_by_email(email) is not None:
        raise click.ClickException("an account with this e-mail address already exists")
    ts = now()
    family = Family(id=uuid.uuid4(), name="StoryVerse operators", time_zone="UTC", created_at=ts)
    account = Account(
        id=uuid.uuid4(),
        family=family,
        email=email,
        password_hash=passwords().hash(password),
        role="admin",
        display_name=display_name,
        created_at=ts,
        password_changed_at=ts,
    )
    db.session.add_all([family, account])
    db.session.commit()
    click.echo(f"created admin {account.id}")
