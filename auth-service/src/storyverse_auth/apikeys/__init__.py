"""API keys: issue, list, revoke, exchange for a short-lived token (routes, service, models, schemas, errors) and
the guard that keeps API-key tokens out of the account endpoints (guard)."""
