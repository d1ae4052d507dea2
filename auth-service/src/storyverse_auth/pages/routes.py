"""Sign-in and sign-out of the parent pages (the device and family pages are in device.py and family.py)."""

from __future__ import annotations

import logging

from flask import g, request

from .. import metrics
from ..auth import accounts, throttle
from ..errors import APIError
from ..extensions import db
from ..mfa import service as mfa
from . import bp, session, views
from .views import LOGIN_CSRF_COOKIE, SESSION_COOKIE

log = logging.getLogger(__name__)


def _ip() -> str:
    return request.remote_addr or "unknown"


def _sign_in_page(status: int = 200, message: str | None = None, mfa_needed: bool = False):
    cookie, new = views.login_csrf_cookie()
    response = views.page(
        "pages/sign_in.html",
        status,
        login_csrf=session.login_csrf_token(cookie),
        next=views.safe_next(request.values.get("next")),
        email=request.form.get("email", ""),
        message=message,
        mfa_needed=mfa_needed,
    )
    if new:
        views.set_cookie(response, LOGIN_CSRF_COOKIE, cookie)
    return response


@bp.get("/sign-in")
def sign_in_page():
    if views.signed_in() is not None:
        return views.see_other(views.safe_next(request.args.get("next")))
    return _sign_in_page()


@bp.post("/sign-in")
def sign_in():
    cookie = request.cookies.get(views.cookie_name(LOGIN_CSRF_COOKIE), "")
    if not cookie or not views.csrf_ok(session.login_csrf_token(cookie)):
        return views.csrf_refused()
    email, password = accounts.normalise_email(request.form.get("email", "")), request.form.get("password", "")
    if not email or not password:
        return _sign_in_page(400, "Enter your e-mail address and password.")
    try:
        throttle.check(email, _ip())
    except APIError:
        return _sign_in_page(429, "Too many attempts. Wait a few minutes and try again.")
    account = accounts.authenticate(email, password)
    if account is None or account.role != "parent":
        throttle.record_failure(email, _ip(), reason="bad_credentials")
        db.session.commit()
        metrics.inc("sv_auth_logins_total", outcome="failure")
        return _sign_in_page(401, "The e-mail address or password is incorrect (only parents can sign in here).")
    throttle.record_success(email, _ip())
    if mfa.enabled(account.id):
        refused = _second_factor(account)
        if refused is not None:
            return refused
    token = session.create(account)
    db.session.commit()
    log.info("page sign-in", extra={"event": "page_sign_in", "account_id": str(account.id)})
    response = views.see_other(views.safe_next(request.form.get("next")))
    views.set_cookie(response, SESSION_COOKIE, token)
    views.clear_cookie(response, LOGIN_CSRF_COOKIE)
    return response


def _second_factor(account):
    """None when the TOTP or recovery code checks out; otherwise the sign-in page again, asking for it."""
    code = request.form.get("code", "").replace(" ", "")
    if not code:
        db.session.commit()
        return _sign_in_page(401, "Enter the code from your authenticator app.", mfa_needed=True)
    totp = code if code.isdigit() and len(code) == 6 else None
    try:
        mfa.verify(account, totp, None if totp else code, _ip())
    except APIError as exc:
        db.session.commit()  # the failed attempt counts toward the back-off
        if exc.status_code == 429:
            return _sign_in_page(429, "Too many attempts. Wait a few minutes and try again.", mfa_needed=True)
        return _sign_in_page(401, "That code is not right. Try the newest code.", mfa_needed=True)
    return None


@bp.post("/sign-out")
def sign_out():
    if views.signed_in() is None:
        return views.see_other("/parent/sign-in")
    if not views.csrf_ok(session.csrf_token(g.sv_page_token)):
        return views.csrf_refused()
    session.destroy(g.sv_page_token)
    response = views.see_other("/parent/sign-in")
    views.clear_cookie(response, SESSION_COOKIE)
    return response


from . import device, family  # noqa: E402,F401  (register their views)
