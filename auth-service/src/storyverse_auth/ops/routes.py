"""Liveness, readiness (PostgreSQL + Redis) and Prometheus metrics."""

from __future__ import annotations

import logging

import redis
from apiflask import APIBlueprint
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from .. import metrics
from ..errors import APIError
from ..extensions import db, redis_store
from ..schemas import StatusOut

bp = APIBlueprint("ops", __name__, tag="Operations")

log = logging.getLogger(__name__)

_METRICS_DOC = {
    200: {
        "description": "Prometheus text exposition format.",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
}


@bp.get("/healthz")
@bp.output(StatusOut)
@bp.doc(summary="Liveness")
def healthz():
    return {"status": "ok"}


@bp.get("/readyz")
@bp.output(StatusOut)
@bp.doc(summary="Readiness: PostgreSQL and Redis reachable", responses=[503])
def readyz():
    failing = []
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        log.warning("readiness: database unreachable")
        failing.append("database")
    try:
        redis_store.client.ping()
    except redis.RedisError:
        log.warning("readiness: redis unreachable")
        failing.append("redis")
    if failing:
        raise APIError.unavailable("Unreachable: " + ",".join(failing))
    return {"status": "ok"}


@bp.get("/metrics")
@bp.doc(summary="Prometheus metrics", responses=_METRICS_DOC)
def prometheus_metrics():
    return metrics.render(), 200, {"Content-Type": metrics.CONTENT_TYPE}
