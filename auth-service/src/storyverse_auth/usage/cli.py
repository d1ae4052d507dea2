"""``flask usage sync``: copy today's (and any unexpired day's) sv-quota counters into usage_daily."""

from __future__ import annotations

import click

from . import bp
from .sync import start_periodic_sync, sync_usage


@bp.cli.command("sync")
def sync_command() -> None:
    """Upsert every sv-quota daily counter from Redis into PostgreSQL (idempotent; safe to run from cron)."""
    result = sync_usage()
    click.echo(f"counters={result.counters} rows={result.rows}")


@bp.record_once
def _periodic(state) -> None:
    interval = int(state.app.config.get("USAGE_SYNC_INTERVAL") or 0)
    if interval > 0 and not state.app.config.get("TESTING"):
        start_periodic_sync(state.app, interval)
