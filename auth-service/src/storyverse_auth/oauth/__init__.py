"""OAuth 2.1 / OpenID Connect provider for StoryVerse's own apps and third-party partners (issue 9).

Two blueprints:

- ``oauth`` (``/oauth/...``): the protocol endpoints, built on Authlib's Flask server components. They take
  ``application/x-www-form-urlencoded`` bodies and answer in the OAuth formats (RFC 6749 §5.2 errors, redirects,
  an HTML consent page), not JSON + RFC 9457, so they are left out of the OpenAPI document; the discovery
  document (``/.well-known/openid-configuration``) describes them and tests/auth_service/test_auth_oauth_discovery.py
  checks it against what they do.
- ``oauth_clients`` (``/api/auth/oauth/clients``): the admin client registry, JSON and in the OpenAPI document.
- ``connected_apps`` (``/api/auth/connected-apps``): a parent's connected apps, listed and revoked (JSON).
"""

from __future__ import annotations

from apiflask import APIBlueprint, APIFlask

bp = APIBlueprint("oauth", __name__, url_prefix="/oauth", template_folder="templates", enable_openapi=False)
admin_bp = APIBlueprint("oauth_clients", __name__, url_prefix="/api/auth/oauth/clients", tag="OAuth clients")
apps_bp = APIBlueprint("connected_apps", __name__, url_prefix="/api/auth/connected-apps", tag="Connected apps")
# Blueprints whose POST bodies are forms, not JSON (the app's JSON-only body check skips them).
FORM_BLUEPRINTS = frozenset({bp.name})


def init_app(app: APIFlask) -> None:
    from . import admin, connected, routes  # noqa: F401  (registers the views)
    from .cli import oauth_clients_cli
    from .server import init_app as init_server

    init_server(app)
    app.register_blueprint(bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(apps_bp)
    app.cli.add_command(oauth_clients_cli)
