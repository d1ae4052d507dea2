"""Passwords: forgot / reset / change (routes), argon2id hashing and the password rules (hashing), reset tokens
(recovery)."""
