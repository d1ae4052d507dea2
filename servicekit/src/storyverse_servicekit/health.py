"""Liveness and readiness routes, the same on every Flask service.

``/healthz`` answers while the process serves (Kubernetes restarts it otherwise); ``/readyz`` answers 200 only while
PostgreSQL and Redis both answer, else the service's own 503 problem naming what is unreachable (Kubernetes then
takes the pod out of the Service). The blueprint, its response schema and its error come from the service, so the
routes render exactly like the rest of its API.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError


def unreachable(db: Any, redis_client: Any, log: logging.Logger) -> list[str]:
    """The dependencies that do not answer: ``database`` (one ``SELECT 1``) and ``redis`` (one ``PING``)."""
    failing = []
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        log.warning("readiness: database unreachable")
        failing.append("database")
    try:
        redis_client.ping()
    except redis.RedisError:
        log.warning("readiness: redis unreachable")
        failing.append("redis")
    return failing


def add_health_routes(
    bp: Any, status_schema: Any, db: Any, redis_store: Any, unavailable: Callable[[str], Exception]
) -> None:
    """Register ``GET /healthz`` and ``GET /readyz`` on an apiflask blueprint.

    ``redis_store.client`` is read per request (the service may reconnect); ``unavailable(detail)`` is the
    service's 503 error. Warnings are logged under the blueprint's module name.
    """
    log = logging.getLogger(bp.import_name)

    @bp.get("/healthz")
    @bp.output(status_schema)
    @bp.doc(summary="Liveness")
    def healthz():
        return {"status": "ok"}

    @bp.get("/readyz")
    @bp.output(status_schema)
    @bp.doc(summary="Readiness: PostgreSQL and Redis reachable", responses=[503])
    def readyz():
        failing = unreachable(db, redis_store.client, log)
        if failing:
            raise unavailable("Unreachable: " + ",".join(failing))
        return {"status": "ok"}
