"""``flask oauth-clients create|list|rotate-secret|disable|prune-codes``: the client registry from the shell.

``create`` and ``rotate-secret`` print the secret once (it is stored only as an HMAC); ``--json`` prints one JSON
object for scripts.
"""

from __future__ import annotations

import json
from datetime import timedelta

import click
from flask.cli import AppGroup
from sqlalchemy import delete

from ..clock import now
from ..extensions import db
from . import clients
from .models import CLIENT_TYPES, GRANT_TYPES, OAuthAuthorizationCode
from .scopes import SCOPES

oauth_clients_cli = AppGroup("oauth-clients", help="Manage OAuth 2.1 / OIDC clients.")


def _out(data: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(data))
        return
    for key, value in data.items():
        click.echo(f"{key}: {' '.join(value) if isinstance(value, list) else value}")


def _get(client_id: str):
    client = clients.find(client_id)
    if client is None:
        raise click.ClickException(f"no such client: {client_id}")
    return client


@oauth_clients_cli.command("create")
@click.option("--name", required=True, help="Shown to parents on the consent page.")
@click.option("--type", "client_type", type=click.Choice(CLIENT_TYPES), required=True)
@click.option("--redirect-uri", "redirect_uris", multiple=True, help="Exact redirect URI (repeat for several).")
@click.option(
    "--grant-type",
    "grant_types",
    multiple=True,
    type=click.Choice(GRANT_TYPES),
    help="Repeat for several (default: authorization_code + refresh_token).",
)
@click.option("--scope", "scopes", multiple=True, type=click.Choice(SCOPES), help="Default: all of them.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def create(name, client_type, redirect_uris, grant_types, scopes, as_json) -> None:
    """Register a client; a confidential client's secret is printed once."""
    try:
        created = clients.create(
            name,
            client_type,
            list(redirect_uris),
            list(grant_types) or ["authorization_code", "refresh_token"],
            list(scopes) or None,
        )
    except clients.ClientError as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    _out({**clients.describe(created.client), "client_secret": created.secret}, as_json)


@oauth_clients_cli.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_clients(as_json) -> None:
    """List clients (never their secrets)."""
    rows = [clients.describe(c) for c in clients.list_all()]
    if as_json:
        click.echo(json.dumps(rows))
        return
    for row in rows:
        state = "disabled" if row["disabled"] else "enabled"
        click.echo(
            f"{row['client_id']} {row['client_type']} {state} {' '.join(row['grant_types'])} {row['client_name']}"
        )


@oauth_clients_cli.command("rotate-secret")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True)
def rotate_secret(client_id, as_json) -> None:
    """Replace a confidential client's secret (printed once); the old one stops working at once."""
    client = _get(client_id)
    try:
        secret = clients.rotate_secret(client)
    except clients.ClientError as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    _out({"client_id": client.client_id, "client_secret": secret}, as_json)


@oauth_clients_cli.command("disable")
@click.argument("client_id")
def disable(client_id) -> None:
    """Disable a client and revoke every grant (and so every token) it holds."""
    revoked = clients.disable(_get(client_id))
    db.session.commit()
    click.echo(f"disabled {client_id}; revoked {revoked} grants")


@oauth_clients_cli.command("prune-codes")
def prune_codes() -> None:
    """Delete authorization codes that expired more than a day ago (used ones are kept that long for replay
    detection)."""
    result = db.session.execute(
        delete(OAuthAuthorizationCode).where(OAuthAuthorizationCode.expires_at < now() - timedelta(days=1))
    )
    db.session.commit()
    click.echo(f"pruned={result.rowcount}")
