"""StoryVerse authentication service: accounts, families, sessions, tokens, JWKS."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from apiflask import APIFlask
from flask import Response, request
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.middleware.proxy_fix import ProxyFix

from . import audit, input_guard, logs, mailer, metrics
from .config import ProdConfig, check_production, config_class, environment_config
from .errors import PROBLEM_MIMETYPE, PROBLEM_SCHEMA, APIError, register_error_handlers
from .extensions import db, migrate, redis_store
from .password import hashing as passwords

__all__ = ["create_app"]

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_FORM_BLUEPRINTS = frozenset({"oauth"})  # OAuth protocol endpoints take form bodies (RFC 6749)
_HTML_FORM_BLUEPRINTS = frozenset({"pages"})  # the parent pages (pages/): HTML forms, no JavaScript
_NOT_JSON_BLUEPRINTS = _FORM_BLUEPRINTS | _HTML_FORM_BLUEPRINTS


class _App(APIFlask):
    """APIFlask whose ``ensure_sync`` remembers its answer per function. Flask asks it for every hook, view and
    error handler on every request (eleven times per refresh) and each answer costs an ``inspect`` walk; whether a
    function is a coroutine function never changes. (``ensure_sync`` is Flask's documented override point.)"""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync_callables: dict[Callable, Callable] = {}

    def ensure_sync(self, func: Callable) -> Callable:
        found = self._sync_callables.get(func)
        if found is None:
            found = self._sync_callables[func] = super().ensure_sync(func)
        return found


def create_app(config: dict[str, Any] | None = None) -> APIFlask:
    app = _App(__name__, title="StoryVerse Auth Service", version="0.1.0", docs_path="/docs", spec_path="/openapi.json")
    cls = config_class("testing" if (config or {}).get("TESTING") else None)
    app.config.from_object(cls)
    app.config.update(environment_config(cls))  # ConfigError: one line naming each bad variable
    if config:
        app.config.update(config)
    if cls is ProdConfig:
        check_production(app.config)  # ConfigError: one line naming every unfit setting
    from .auth.fast_refresh import FastRefresh  # (late: it imports the session and token services)

    app.wsgi_app = FastRefresh(app, app.wsgi_app)  # type: ignore[method-assign]  (under ProxyFix: sees the client IP)
    if app.config["TRUST_PROXY_HOPS"] > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=app.config["TRUST_PROXY_HOPS"])  # type: ignore[method-assign]
    app.config["HTTP_ERROR_SCHEMA"] = PROBLEM_SCHEMA
    app.config["VALIDATION_ERROR_SCHEMA"] = PROBLEM_SCHEMA
    register_extensions(app)
    register_blueprints(app)
    register_error_handlers(app)
    register_commands(app)
    app.spec_processor(_problem_responses)
    app.before_request(_require_json_bodies)
    input_guard.init_app(app, oauth_blueprints=_FORM_BLUEPRINTS)
    app.after_request(audit.flush)
    app.after_request(_no_store_by_default)
    from .sessions import claims_cache  # (late: it imports the models and the session store)

    claims_cache.install()
    return app


def register_extensions(app: APIFlask) -> None:
    logs.configure(app)
    metrics.init_app(app)
    db.init_app(app)
    migrate.init_app(app, db, directory=app.config["MIGRATIONS_DIR"])
    redis_store.init_app(app)
    passwords.init_app(app)
    mailer.init_app(app)


def register_blueprints(app: APIFlask) -> None:
    from .auth.routes import bp as auth_bp
    from .children.routes import bp as children_bp
    from .devices.routes import bp as devices_bp
    from .families.routes import bp as families_bp
    from .ops.routes import bp as ops_bp
    from .password.routes import bp as password_bp
    from .sessions.routes import bp as sessions_bp
    from .wellknown.routes import bp as wellknown_bp

    for bp in (auth_bp, sessions_bp, password_bp, families_bp, children_bp, devices_bp, wellknown_bp, ops_bp):
        app.register_blueprint(bp)

    from .admin.cli import bp as admin_bp
    from .apikeys.routes import admin_bp as apikeys_admin_bp
    from .apikeys.routes import bp as apikeys_bp

    # Usage analytics and the admin API moved to the rate limiting service (rate-limiting-service/).
    for bp in (apikeys_bp, apikeys_admin_bp, admin_bp):
        app.register_blueprint(bp)

    from .billing.routes import bp as billing_bp
    from .mfa.routes import bp as mfa_bp
    from .privacy.routes import bp as privacy_bp
    from .verification.routes import bp as verification_bp

    for bp in (billing_bp, verification_bp, mfa_bp, privacy_bp):  # issue 20: family features, round two
        app.register_blueprint(bp)

    from .oauth import init_app as init_oauth

    init_oauth(app)  # OAuth 2.1 / OIDC provider: /oauth/* and the client registry (its CLI too)

    from .pages import bp as pages_bp

    app.register_blueprint(pages_bp)  # issue 20: the parent pages (/parent/...): sign-in, device, family


def register_commands(app: APIFlask) -> None:
    from . import models  # noqa: F401  (so Alembic autogenerate sees every table)
    from .cli import register_commands as register_cli

    register_cli(app)


def _require_json_bodies() -> None:
    """415 for a request body that is not JSON (apiflask would otherwise ignore it)."""
    if request.method not in _BODY_METHODS or request.blueprint in _NOT_JSON_BLUEPRINTS:
        return
    has_body = bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "")
    if has_body and not request.is_json:
        raise APIError.unsupported_media_type()


def _no_store_by_default(response: Response) -> Response:
    """``Cache-Control: no-store`` on every answer that does not choose its own (the JWKS and discovery documents
    do): tokens (RFC 6749 §5.1), sessions, family data and problems are never for a cache."""
    if "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"
    return response


def _problem_responses(spec: dict[str, Any]) -> dict[str, Any]:
    """Every error response is ``application/problem+json`` with the Problem schema, and the generic ones
    (malformed body, too large, wrong media type, validation, missing token) are documented on every operation
    they can come from."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    schemas.pop("HTTPError", None)
    schemas.pop("ValidationError", None)
    problem = {PROBLEM_MIMETYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            generic = ["400", "413", "415", "422"] if "requestBody" in operation else []
            generic += ["401"] if operation.get("security") else []
            for status in generic:
                responses.setdefault(status, {"description": HTTP_STATUS_CODES[int(status)]})
            for status, response in responses.items():
                if str(status).isdigit() and int(status) >= 400:
                    response["content"] = problem
    return spec
