"""Child sign-in without e-mail and the RFC 8628 device authorization grant (routes, service)."""
