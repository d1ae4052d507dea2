"""``sv-ratelimit``: the service's commands (the image's entry point besides gunicorn).

sv-ratelimit init-db     create the service's tables where missing (idempotent; an advisory lock serialises pods)
sv-ratelimit sync        one usage sync now (Redis -> PostgreSQL, occasions, gauges); the service runs it itself
"""

from __future__ import annotations

import click
from sqlalchemy import text

from .extensions import db

INIT_LOCK = 0x5356524C  # "SVRL": one init-db at a time across pods


@click.group()
def main() -> None:
    """StoryVerse rate limiting service."""


def _app():
    from . import create_app

    return create_app({"USAGE_SYNC_INTERVAL": 0})


@main.command("init-db")
def init_db() -> None:
    """Create usage_daily (and its index) when missing."""
    app = _app()
    with app.app_context(), db.engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": INIT_LOCK})
        db.metadata.create_all(conn, checkfirst=True)
    click.echo("tables ready")


@main.command("sync")
def sync() -> None:
    """Upsert every sv-quota daily counter into usage_daily now."""
    from .sync import sync_usage

    app = _app()
    with app.app_context():
        result = sync_usage()
    click.echo(f"counters={result.counters} rows={result.rows} occasions={result.occasions_applied}")


if __name__ == "__main__":
    main()
