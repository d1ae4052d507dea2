"""One pooled Redis client per connection settings and process (never a connect per request).

Timeouts are short (100 ms by default, ≤ 250 ms by schema) and the standalone client never retries by itself: the
caller decides what a failure means (fault_tolerant). The cluster client keeps a few retries so it can follow a
failover.

The pool is small on purpose: measured on a 2-core host (docs/benchmarks-quota.md), 200 threads sharing 16
connections finish more decisions per second, and time out less, than the same threads on 64 connections: the
calls queue for a connection here (pool_wait_ms) instead of contending for the interpreter with a socket timeout
running.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry


@dataclass(frozen=True)
class RedisSettings:
    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = None
    ssl: bool = False
    timeout_ms: int = 100
    cluster_nodes: tuple[str, ...] = ()  # "host:port" seeds; non-empty means Redis Cluster
    cluster_retries: int = 3
    max_connections: int = 16  # per process (standalone; per node on a cluster: 16x this, non-blocking)
    pool_wait_ms: int = 2000  # local queueing for a free pooled connection (not a Redis timeout)


_clients: dict[RedisSettings, redis.Redis | RedisCluster] = {}
_lock = threading.Lock()


def _parse_node(text: str) -> ClusterNode:
    host, _, port = text.rpartition(":")
    return ClusterNode(host or "127.0.0.1", int(port))


def build_client(s: RedisSettings) -> redis.Redis | RedisCluster:
    """A new client for these settings (use get_client to share one per process)."""
    timeout = s.timeout_ms / 1000.0
    common = {
        "username": s.username,
        "password": s.password,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
    }
    if s.cluster_nodes:
        return RedisCluster(
            startup_nodes=[_parse_node(n) for n in s.cluster_nodes],
            retry=Retry(NoBackoff(), s.cluster_retries),
            max_connections=s.max_connections * 16,
            ssl=s.ssl,
            **common,
        )
    # A bounded pool that queues bursts for a free connection (at most pool_wait_ms: thread scheduling, not Redis,
    # is what is slow then) instead of failing at once as the default pool does at max_connections.
    pool = redis.BlockingConnectionPool(
        host=s.host,
        port=s.port,
        db=s.db,
        max_connections=s.max_connections,
        timeout=s.pool_wait_ms / 1000.0,
        retry=Retry(NoBackoff(), 0),
        connection_class=redis.SSLConnection if s.ssl else redis.Connection,
        **common,
    )
    return redis.Redis(connection_pool=pool)


def get_client(s: RedisSettings) -> redis.Redis | RedisCluster:
    """The process-wide client for these settings."""
    client = _clients.get(s)
    if client is None:
        with _lock:
            client = _clients.get(s)
            if client is None:
                client = _clients[s] = build_client(s)
    return client
