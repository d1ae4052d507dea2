"""The scopes this provider supports (advertised in the discovery document as ``scopes_supported``)."""

from __future__ import annotations

# OpenID Connect Core §5.4: `openid` asks for an ID token; `profile` adds `name`; `email` adds `email`.
SCOPES = ("openid", "profile", "email")
