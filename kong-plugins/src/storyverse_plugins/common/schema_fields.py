"""Schema blocks several plugins share (as kong/tools/redis/schema.lua does for Kong's own plugins)."""

from __future__ import annotations

from typing import Any

from storyverse_plugins.common.redis_pool import RedisSettings

# Measured (bench/quota_bench.py, "Redis budget under load"): on a loaded 2-core host, 50 concurrent callers in one
# process saw decide.lua exceed 50 ms (client-side scheduling, not Redis); 100 ms with a 16-connection pool (2 s
# local wait for a connection) did not at 200 callers. The cap keeps a hung Redis from holding a request for long
# (one retry: at most 2x this).
DEFAULT_REDIS_TIMEOUT_MS = 100
MAX_REDIS_TIMEOUT_MS = 250


def schema_field(name: str, description: str, type_: str, **rules: Any) -> dict[str, Any]:
    """One Kong schema field: ``{name: {description, type, **rules}}`` (every field carries a description)."""
    return {name: {"description": description, "type": type_, **rules}}


REDIS_FIELDS: tuple[dict[str, Any], ...] = (
    {"redis_host": {"description": "Redis host (standalone).", "type": "string", "default": "127.0.0.1"}},
    {
        "redis_port": {
            "description": "Redis port (standalone).",
            "type": "integer",
            "default": 6379,
            "between": [1, 65535],
        }
    },
    {
        "redis_database": {
            "description": "Redis logical database (standalone only; Redis Cluster has only database 0).",
            "type": "integer",
            "default": 0,
            "between": [0, 15],
        }
    },
    {"redis_username": {"description": "Redis ACL user name (Redis 6+), if any.", "type": "string"}},
    {
        "redis_password": {
            "description": "Redis password, if any (prefer a vault reference in kong.yml).",
            "type": "string",
            "referenceable": True,
            "encrypted": True,
        }
    },
    {"redis_ssl": {"description": "Connect to Redis over TLS.", "type": "boolean", "default": False}},
    {
        "redis_timeout_ms": {
            "description": "Connect and read timeout for every Redis call, in ms (at most 250: a slow Redis must "
            "not hold requests; the default is measured, see docs/benchmarks-quota.md).",
            "type": "integer",
            "default": DEFAULT_REDIS_TIMEOUT_MS,
            "between": [1, MAX_REDIS_TIMEOUT_MS],
        }
    },
    {
        "redis_cluster_nodes": {
            "description": "Redis Cluster seed nodes as host:port; when set, the cluster is used instead of "
            "redis_host/redis_port.",
            "type": "array",
            "elements": {"type": "string"},
        }
    },
)


def _get(raw: dict[str, Any], name: str, default: Any) -> Any:
    value = raw.get(name)
    return default if value is None else value


def parse_redis(raw: dict[str, Any]) -> RedisSettings:
    """RedisSettings from a plugin config dict (None means unset); raises ValueError on bad values."""
    d = RedisSettings()
    timeout = int(_get(raw, "redis_timeout_ms", d.timeout_ms))
    if not 1 <= timeout <= MAX_REDIS_TIMEOUT_MS:
        raise ValueError(f"redis_timeout_ms must be between 1 and {MAX_REDIS_TIMEOUT_MS}")
    nodes = tuple(str(n) for n in (_get(raw, "redis_cluster_nodes", ()) or ()))
    for node in nodes:
        if not node.rpartition(":")[2].isdigit():
            raise ValueError(f"redis_cluster_nodes entry {node!r} is not host:port")
    database = int(_get(raw, "redis_database", d.db))
    if nodes and database != 0:
        raise ValueError("redis_database must be 0 with redis_cluster_nodes (Redis Cluster has one database)")
    return RedisSettings(
        host=str(_get(raw, "redis_host", d.host)),
        port=int(_get(raw, "redis_port", d.port)),
        db=database,
        username=raw.get("redis_username") or None,
        password=raw.get("redis_password") or None,
        ssl=bool(_get(raw, "redis_ssl", d.ssl)),
        timeout_ms=timeout,
        cluster_nodes=nodes,
    )
