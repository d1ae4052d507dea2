"""sv-rbac: per-route authorization (roles per method, family ownership, child controls, age/content rules)."""
