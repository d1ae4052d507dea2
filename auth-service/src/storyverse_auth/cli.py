"""``flask keys ensure|rotate|prune|list``, ``flask sessions move-to-redis|refresh-claims`` and ``flask create-db``."""

from __future__ import annotations

import click
import psycopg2
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from psycopg2 import sql
from sqlalchemy.engine import make_url

from .extensions import db
from .models import SigningKey
from .tokens import signing

keys_cli = AppGroup("keys", help="Manage JWT signing keys.")
sessions_cli = AppGroup("sessions", help="Manage the session store.")


@keys_cli.command("ensure")
def ensure() -> None:
    """Create the active and next keys of every algorithm signed with if missing (idempotent; run before starting
    the server)."""
    created = signing.ensure_keys()
    db.session.commit()
    click.echo("created keys" if created else "keys present")


@keys_cli.command("rotate")
def rotate() -> None:
    """Per algorithm signed with: retire the active key (published until its tokens expire), promote next, publish
    a new next; retire the keys of an algorithm no longer signed with (docs/architecture.md §4)."""
    rotations = signing.rotate()
    db.session.commit()
    for done in rotations:
        click.echo(f"{done.algorithm} retired={done.retired or '-'} active={done.active or '-'}")


@keys_cli.command("prune")
def prune() -> None:
    """Delete retired keys whose tokens have all expired."""
    count = signing.prune()
    db.session.commit()
    click.echo(f"pruned={count}")


@keys_cli.command("list")
def list_keys() -> None:
    """One key a line: kid, algorithm, state, what it signs now (access, id) and until when it is published."""
    uses = signing.active_uses()
    for key in db.session.scalars(db.select(SigningKey).order_by(SigningKey.created_at)):
        signs = uses.get(key.kid, "-")
        click.echo(f"{key.kid} {key.algorithm} {key.state} signs={signs} publish_until={key.publish_until}")


@sessions_cli.command("move-to-redis")
@click.option("--batch", default=500, show_default=True, help="Sessions per PostgreSQL transaction.")
def move_to_redis(batch: int) -> None:
    """Move every live session still in PostgreSQL to Redis (idempotent; sessions also move on first use)."""
    from .sessions.service import move_all_to_redis

    click.echo(f"moved={move_all_to_redis(batch)}")


@sessions_cli.command("refresh-claims")
@click.option("--family", "family_id", type=click.UUID, help="Every account of this family.")
@click.option("--account", "account_id", type=click.UUID, help="One account.")
def refresh_claims(family_id, account_id) -> None:
    """After a change made by hand in SQL: the sessions' cached token claims are read again at their next refresh."""
    from .models import Account
    from .sessions.claims_cache import touch_accounts

    if (family_id is None) == (account_id is None):
        raise click.UsageError("give exactly one of --family or --account")
    members = db.select(Account.id).where(Account.family_id == family_id)
    ids = {account_id} if account_id else set(db.session.scalars(members))
    click.echo(f"sessions={touch_accounts(ids)}")


@click.command("create-db")
@with_appcontext
def create_db() -> None:
    """Create the configured PostgreSQL database if it does not exist (run before ``flask db upgrade``)."""
    url = make_url(current_app.config["SQLALCHEMY_DATABASE_URI"])
    conn = psycopg2.connect(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password, dbname="postgres"
    )
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (url.database,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(url.database)))
                click.echo(f"created database {url.database}")
            else:
                click.echo(f"database {url.database} exists")
    finally:
        conn.close()


def register_commands(app: Flask) -> None:
    app.cli.add_command(keys_cli)
    app.cli.add_command(sessions_cli)
    app.cli.add_command(create_db)
