"""Families: the caller's family and co-parent invitations (routes, service), their request and response schemas
(schemas) and the problems families, children and device sign-in answer with (errors)."""
