"""E-mail verification: a parent proves the address before creating children or giving consent (issue 20)."""
