"""Liveness, readiness (PostgreSQL + Redis) and the Prometheus exposition: cluster-wide gauges (gauges.py) and
`process_*{pid,role}` for the gunicorn master and every worker of the pod (storyverse_process_metrics)."""

from __future__ import annotations

import logging

import redis
from apiflask import APIBlueprint
from flask import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from storyverse_process_metrics import PodProcessCollector

from .errors import APIError
from .extensions import db, redis_store
from .gauges import RateLimitCollector
from .schemas import StatusOut

log = logging.getLogger(__name__)

bp = APIBlueprint("ops", __name__, tag="Operations")
REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(RateLimitCollector(lambda: redis_store.client))
REGISTRY.register(PodProcessCollector())


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
@bp.doc(summary="Prometheus metrics: cluster-wide rate-limit gauges computed from Redis, the pod's processes")
def metrics():
    return Response(generate_latest(REGISTRY), mimetype=CONTENT_TYPE_LATEST)
