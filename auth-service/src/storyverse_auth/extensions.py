"""Extensions as unbound singletons, bound by ``init_app`` in the factory."""

from __future__ import annotations

import threading

import redis
from flask import Flask
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
migrate = Migrate()


class RedisClient:
    """A Redis client bound to an app: standalone, Sentinel or Cluster by ``REDIS_URL`` (redis_topology.py).
    The gateway reads some of the same keys (redis_keys.py).

    Built on first use, not in ``init_app``: a Cluster client reads the slot map when it is created, and a worker
    must start (and answer 503 problems) while Redis is down rather than crash-loop."""

    def __init__(self) -> None:
        self._client: redis.Redis | None = None
        self._url: str | None = None
        self._lock = threading.Lock()

    def init_app(self, app: Flask) -> None:
        from .redis_topology import parse

        url = app.config["REDIS_URL"]
        if "+" in url.partition("://")[0]:
            parse(url)  # a malformed Sentinel/Cluster URL fails at start-up, not on the first request
        self._client, self._url = None, url
        app.extensions["sv_redis"] = self

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            if self._url is None:
                raise RuntimeError("redis not initialised: call init_app")
            with self._lock:
                if self._client is None:
                    self._client = _connect(self._url)
        return self._client


def _connect(url: str) -> redis.Redis:
    from redis.exceptions import RedisClusterException

    from .redis_topology import client_for

    try:
        return client_for(url)  # type: ignore[return-value]
    except RedisClusterException as exc:  # not a RedisError: make it one, so callers answer 503
        raise redis.ConnectionError("Redis Cluster unreachable") from exc


redis_store = RedisClient()
