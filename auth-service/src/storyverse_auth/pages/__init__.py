"""Server-rendered parent pages (issue 20): sign-in, the RFC 8628 device page (``DEVICE_VERIFICATION_URI`` points
here) and the family page. No JavaScript: plain forms, answered with a page or a ``303 See Other``.

- **Sign-in**: the parent's e-mail and password (plus a TOTP or recovery code when a second factor is set up)
  create a *page session* (session.py): a random token in a cookie (``HttpOnly``, ``SameSite=Lax``, ``Secure`` and
  the ``__Host-`` prefix when the issuer is https), held in Redis. It is not an API session and mints no tokens.
- **CSRF**: every POST form carries a token; signed in, it is the HMAC of the page session's token; at sign-in (no
  session yet) it is the HMAC of a double-submit cookie, as on the OAuth consent page. A POST without a valid one
  is a ``403`` page.
- **Framing**: ``Content-Security-Policy: frame-ancestors 'none'`` and ``X-Frame-Options: DENY`` on every page.

Routed by the gateway as public routes (sv-jwt anonymous, per-IP limits; the pages authenticate the parent
themselves) under ``/parent/...`` (gateway-config ``routes.FAMILY_PAGES``); kept out of the OpenAPI document
of the service like the OAuth endpoints.
"""

from __future__ import annotations

from apiflask import APIBlueprint

bp = APIBlueprint("pages", __name__, url_prefix="/parent", template_folder="templates", enable_openapi=False)

from . import routes  # noqa: E402,F401  (registers the views)
