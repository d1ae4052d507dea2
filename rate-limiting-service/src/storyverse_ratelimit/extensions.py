"""Extensions as unbound singletons, bound by ``init_app`` in the factory."""

from __future__ import annotations

import redis
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


class RedisClient:
    """A pool on the limits' Redis (the one sv-quota writes)."""

    def __init__(self) -> None:
        self._client: redis.Redis | None = None

    def init_app(self, app: Flask) -> None:
        self._client = redis.Redis.from_url(
            app.config["REDIS_URL"], socket_timeout=2, socket_connect_timeout=2, decode_responses=True
        )
        app.extensions["sv_redis"] = self

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            raise RuntimeError("redis not initialised: call init_app")
        return self._client


redis_store = RedisClient()
