"""Liveness, readiness (PostgreSQL + Redis) and the Prometheus exposition: cluster-wide gauges (gauges.py) and
`process_*{pid,role}` for the gunicorn master and every worker of the pod (storyverse_process_metrics)."""

from __future__ import annotations

from apiflask import APIBlueprint
from flask import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from storyverse_process_metrics import PodProcessCollector
from storyverse_servicekit.health import add_health_routes

from .errors import APIError
from .extensions import db, redis_store
from .gauges import RateLimitCollector
from .schemas import StatusOut

bp = APIBlueprint("ops", __name__, tag="Operations")
add_health_routes(bp, StatusOut, db, redis_store, APIError.unavailable)
REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(RateLimitCollector(lambda: redis_store.client))
REGISTRY.register(PodProcessCollector())


@bp.get("/metrics")
@bp.doc(summary="Prometheus metrics: cluster-wide rate-limit gauges computed from Redis, the pod's processes")
def metrics():
    return Response(generate_latest(REGISTRY), mimetype=CONTENT_TYPE_LATEST)
