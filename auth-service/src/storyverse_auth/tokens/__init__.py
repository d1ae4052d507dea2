"""Access tokens (RFC 9068), their signing keys and the token bodies the endpoints return."""
