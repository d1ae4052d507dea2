"""Sessions: the caller's sessions (routes), refresh-token rotation (service) on the Redis session store (store)."""
