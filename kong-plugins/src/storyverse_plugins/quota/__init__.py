"""sv-quota: per-endpoint rate limits (GCRA) and daily tier quotas in Redis, one atomic script per request."""
