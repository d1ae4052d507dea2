"""The auth service's Redis client for the deployment's topology, chosen by ``REDIS_URL`` (issue 17).

- ``redis://[[user]:password@]host:port/db`` and ``rediss://…`` (TLS): one standalone server (or a managed
  primary endpoint that fails over behind one DNS name).
- ``redis+sentinel://[[user]:password@]host:port[,host:port…]/service_name[/db]`` (``rediss+sentinel`` for TLS):
  Sentinel finds the current master of ``service_name``; the client asks again after a failover.
- ``redis+cluster://[[user]:password@]host:port[,host:port…]`` (``rediss+cluster`` for TLS): Redis Cluster
  (ElastiCache cluster mode, Multi-AZ); the nodes are seeds, the client learns the slot map and follows a
  failover (MOVED, a refreshed map) with a few retries.

Every key the service writes for one subject shares a hash tag where a command or script touches several
(``redis_keys.py``), so the same code runs on all three.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel

SOCKET_TIMEOUT = 2.0
CLUSTER_RETRIES = 6  # ~3 s of backoff: a replica promotion with cluster-node-timeout 2 s fits inside


@dataclass(frozen=True)
class RedisTarget:
    topology: str  # standalone | sentinel | cluster
    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    ssl: bool = False
    db: int = 0
    service: str | None = None  # the Sentinel master name


def parse(url: str) -> RedisTarget:
    """What ``url`` names; ValueError for a scheme or shape this service does not support."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    base, _, topology = scheme.partition("+")
    if base not in ("redis", "rediss") or topology not in ("", "sentinel", "cluster"):
        raise ValueError(f"unsupported Redis URL scheme {scheme!r}")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    nodes = tuple(_node(item) for item in hostlist.split(",") if item)
    if not nodes:
        raise ValueError("a Redis URL names at least one host")
    path = [segment for segment in parts.path.split("/") if segment]
    service, db = None, 0
    if topology == "sentinel":
        if not path:
            raise ValueError("redis+sentinel:// URLs end in /<master name>[/db]")
        service, path = path[0], path[1:]
    if path:
        if topology == "cluster":
            raise ValueError("Redis Cluster has only database 0")
        db = int(path[0])
    return RedisTarget(
        topology=topology or "standalone",
        nodes=nodes,
        username=unquote(username) or None,
        password=unquote(password) or None,
        ssl=base == "rediss",
        db=db,
        service=service,
    )


def _node(text: str) -> tuple[str, int]:
    """``host:port``, ``host``, ``[v6]:port`` or ``[v6]`` (port 6379 when absent)."""
    if text.startswith("[") and text.endswith("]"):
        return text[1:-1], 6379
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, 6379
    return host.strip("[]"), int(port)


def client_for(url: str, decode_responses: bool = True) -> redis.Redis | RedisCluster:
    """A pooled client for ``url``'s topology (one per process: the extension keeps it)."""
    if "+" not in url.partition("://")[0]:  # standalone: redis-py's own URL grammar (query options, unix://)
        return redis.Redis.from_url(
            url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT, decode_responses=decode_responses
        )
    target = parse(url)
    common = {
        "username": target.username,
        "password": target.password,
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": SOCKET_TIMEOUT,
        "decode_responses": decode_responses,
    }
    if target.topology == "cluster":
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.1), CLUSTER_RETRIES),
            ssl=target.ssl,
            **common,
        )
    if target.topology == "sentinel":
        sentinel = Sentinel(
            list(target.nodes),
            sentinel_kwargs={"socket_timeout": SOCKET_TIMEOUT, "password": target.password},
            ssl=target.ssl,
            db=target.db,
            **common,
        )
        return sentinel.master_for(target.service)
    raise AssertionError(target.topology)  # parse() admits nothing else with a "+"
