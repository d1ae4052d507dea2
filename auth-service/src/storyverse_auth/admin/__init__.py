"""Administrators: `flask create-admin EMAIL`. The admin API (usage export, grants, abuse blocks, occasions) is the
rate limiting service's (rate-limiting-service/, /api/rate-limits/ through the gateway)."""

from apiflask import APIBlueprint

# cli_group=None: `flask create-admin EMAIL` is a top-level command.
bp = APIBlueprint("admin", __name__, cli_group=None)

from . import cli  # noqa: E402,F401
