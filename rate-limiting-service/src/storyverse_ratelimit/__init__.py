"""StoryVerse rate limiting service: plans and policies, the usage pipeline (Redis -> PostgreSQL), abuse
administration, special occasions and cluster-wide gauges. The per-request decision stays in the gateway's sv-quota
plugin (one Redis script, no extra hop); this service owns everything around it."""

from __future__ import annotations

from typing import Any

from apiflask import APIFlask

from . import logs
from .config import from_environment
from .errors import register_error_handlers
from .extensions import db, redis_store

__all__ = ["create_app"]


def create_app(config: dict[str, Any] | None = None) -> APIFlask:
    app = APIFlask(
        __name__,
        title="StoryVerse Rate Limiting Service",
        version="0.1.0",
        docs_path="/docs",
        spec_path="/openapi.json",
    )
    app.config.from_mapping(from_environment())
    if config:
        app.config.update(config)
    logs.init_app(app, app.config.get("LOG_LEVEL", "INFO"))
    db.init_app(app)
    redis_store.init_app(app)
    from . import models  # noqa: F401  (the table init-db creates)
    from .ops import bp as ops_bp
    from .routes import admin_bp, usage_bp

    for bp in (ops_bp, usage_bp, admin_bp):
        app.register_blueprint(bp)
    register_error_handlers(app)
    interval = int(app.config.get("USAGE_SYNC_INTERVAL") or 0)
    if interval > 0 and not app.config.get("TESTING"):
        from .sync import start_periodic_sync

        start_periodic_sync(app, interval)
    return app
