"""What every parent page shares: rendering with the security headers, the page-session and CSRF cookies, the
signed-in parent, and the CSRF check (a 403 page)."""

from __future__ import annotations

import hmac
import secrets
from typing import Any
from urllib.parse import urlencode

from flask import current_app, g, make_response, redirect, render_template, request

from .. import metrics
from ..models import Account
from . import session

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
}
HOME = "/parent/family"


def _https() -> bool:
    return current_app.config["ISSUER"].startswith("https://")


def cookie_name(base: str) -> str:
    """``__Host-`` names (Secure, Path=/, no Domain: RFC 6265bis §4.1.3.2) when the site is served over https."""
    return f"__Host-{base}" if _https() else base


SESSION_COOKIE, LOGIN_CSRF_COOKIE = "sv_parent", "sv_parent_csrf"


def set_cookie(response, base: str, value: str, max_age: int | None = None) -> None:
    response.set_cookie(
        cookie_name(base), value, max_age=max_age, path="/", secure=_https(), httponly=True, samesite="Lax"
    )


def clear_cookie(response, base: str) -> None:
    response.delete_cookie(cookie_name(base), path="/", secure=_https(), httponly=True, samesite="Lax")


def page(template: str, status: int = 200, **context: Any):
    parent = g.get("sv_parent")
    if parent is not None:
        context.setdefault("csrf_token", session.csrf_token(g.sv_page_token))
        context.setdefault("parent", parent)
    response = make_response(render_template(template, **context), status)
    response.headers.update(PAGE_HEADERS)
    return response


def see_other(location: str):
    response = redirect(location, 303)
    response.headers.update(PAGE_HEADERS)
    return response


def error_page(status: int, title: str, message: str):
    return page("pages/error.html", status, title=title, message=message)


def signed_in() -> Account | None:
    token = request.cookies.get(cookie_name(SESSION_COOKIE))
    parent = session.load(token)
    if parent is not None:
        g.sv_parent, g.sv_page_token = parent, token
    return parent


def to_sign_in():
    """303 to the sign-in page, coming back here (path and query) afterwards."""
    here = request.full_path.rstrip("?")
    return see_other("/parent/sign-in?" + urlencode({"next": here}))


def safe_next(value: str | None) -> str:
    """Only our own pages: no scheme, no host, no ``//`` or backslash tricks."""
    if value and value.startswith("/parent/") and "//" not in value and "\\" not in value:
        return value
    return HOME


def csrf_ok(expected: str) -> bool:
    sent = request.form.get("csrf_token", "")
    if sent and hmac.compare_digest(sent.encode(), expected.encode()):
        return True
    metrics.inc("sv_auth_failed_attempts_total", reason="page_csrf")
    return False


def csrf_refused():
    return error_page(403, "This form has expired", "The form was missing its security token or it expired. "
                      "Go back, reload the page and try again.")  # fmt: skip


def login_csrf_cookie() -> tuple[str, bool]:
    """The sign-in form's double-submit cookie value, and whether it is new (to be set on the response)."""
    current = request.cookies.get(cookie_name(LOGIN_CSRF_COOKIE))
    return (current, False) if current and len(current) <= 100 else (secrets.token_urlsafe(32), True)
