"""Administrators: `flask create-admin EMAIL`. The admin API (usage export, grants, abuse blocks, occasions) is the
rate limiting service's (rate-limiting-service/, /api/rate-limits/ through the gateway)."""
