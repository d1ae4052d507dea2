"""Liveness, readiness (PostgreSQL + Redis) and Prometheus metrics."""

from __future__ import annotations

from apiflask import APIBlueprint
from storyverse_servicekit.health import add_health_routes

from .. import metrics
from ..errors import APIError
from ..extensions import db, redis_store
from ..schemas import StatusOut

bp = APIBlueprint("ops", __name__, tag="Operations")
add_health_routes(bp, StatusOut, db, redis_store, APIError.unavailable)

_METRICS_DOC = {
    200: {
        "description": "Prometheus text exposition format.",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
}


@bp.get("/metrics")
@bp.doc(summary="Prometheus metrics", responses=_METRICS_DOC)
def prometheus_metrics():
    return metrics.render(), 200, {"Content-Type": metrics.CONTENT_TYPE}
