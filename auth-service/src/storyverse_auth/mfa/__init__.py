"""Parent MFA: TOTP (RFC 6238) with hashed recovery codes, step-up for sensitive actions, ``amr`` in tokens."""
