"""The revocation keys the gateway reads (storyverse_contracts.keys), written for every gateway release that may be
running, and confirmed on a replica before the revocation is answered.

**Rolling upgrade from the release before the ``{s:<sid>}`` hash tag** (README: Rolling upgrade). Gateways of that
release read ``sv:revoked:jti:<jti>`` and ``sv:revoked:sid:<sid>``; this release's gateways read only
``sv:revoked:{s:<sid>}:…``. While ``REVOCATION_LEGACY_KEYS`` is on (the default for this release) every revocation
writes both formats and ``is_revoked`` honours both, so whichever gateway or auth pod answers, a revocation written
by a new auth pod is seen. An *old* auth pod writes only the old format, which a new gateway does not read: upgrade
the auth service first, then the gateway, and only after the last old auth pod has been gone for
``ACCESS_TOKEN_TTL`` + 60 s (every key it wrote has expired by then). Turn the setting off in the next release.

**Replica wait** (README: failure analysis). Replication is asynchronous: a revocation acknowledged by a master that
dies before shipping it would come back after the failover (the session refreshable again, the denylist key gone).
``confirm`` closes that window: for each master that holds a key the revocation wrote, and that has a replica
connected (``INFO replication``, cached ``_INFO_SECONDS``), it sends ``WAIT 1 <REVOCATION_REPLICA_WAIT_MS>`` on the
connection that just wrote a marker key in the same hash slot; WAIT returns once a replica has acknowledged the
replication offset, which covers every earlier write to that master. Per topology: a standalone server without
replicas waits for nothing (no failover can lose a write it holds); a standalone or managed primary endpoint with
replicas and a Sentinel master wait on that one server; on a Cluster each shard the revocation touched waits on its
own master. When no replica acknowledges in time the revocation stands on the master and is logged
(``revocation_unreplicated``): the window is then open as before, and only until a replica catches up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import redis
from flask import current_app
from redis.cluster import RedisCluster
from storyverse_contracts.keys import (
    legacy_revoked_jti_key,
    legacy_revoked_sid_key,
    revoked_jti_key,
    revoked_sid_key,
)

from .extensions import redis_store

log = logging.getLogger(__name__)

_INFO_SECONDS = 10.0
_MARKER_TTL_MS = 10_000
_replicas: dict[int, tuple[float, bool]] = {}


def _legacy() -> bool:
    return bool(current_app.config.get("REVOCATION_LEGACY_KEYS", True))


def sid_keys(sid: str) -> list[str]:
    return [revoked_sid_key(sid), *([legacy_revoked_sid_key(sid)] if _legacy() else [])]


def jti_keys(jti: str, sid: str | None) -> list[str]:
    return [revoked_jti_key(jti, sid), *([legacy_revoked_jti_key(jti)] if _legacy() else [])]


def _set(names: list[str], ttl: int) -> list[str]:
    pipe = redis_store.client.pipeline(transaction=False)
    for name in names:
        pipe.set(name, "1", ex=max(int(ttl), 1))
    pipe.execute()
    return names


def deny_sid(sid: str, ttl: int) -> list[str]:
    """Deny every access token whose ``sid`` is ``sid`` for ``ttl`` seconds; the keys written (for ``confirm``)."""
    return _set(sid_keys(sid), ttl)


def deny_jti(jti: str, sid: str | None, ttl: int) -> list[str]:
    """Deny one access token for ``ttl`` seconds; the keys written (for ``confirm``)."""
    return _set(jti_keys(jti, sid), ttl)


def is_revoked(jti: str, sid: str | None) -> bool:
    """Whether the token or its session is denied, in either key format (one pipeline)."""
    names = [*jti_keys(jti, sid), *(sid_keys(sid) if sid else [])]
    pipe = redis_store.client.pipeline(transaction=False)
    for name in names:
        pipe.exists(name)
    return any(pipe.execute())


# -- the replica wait ----------------------------------------------------------------------------------------------


def confirm(written: Iterable[str]) -> bool:
    """Wait (bounded) until a replica of every master holding one of ``written`` has it; False if one did not.

    Redis errors propagate (the caller's request answers 503): a revocation is retried rather than half-confirmed."""
    timeout = int(current_app.config["REVOCATION_REPLICA_WAIT_MS"])
    names = list(dict.fromkeys(written))
    if timeout <= 0 or not names:
        return True
    confirmed = True
    for server, name in _masters(names):
        if not _has_replica(server):
            continue
        started = time.perf_counter()
        if _wait(server, name, timeout) < 1:
            confirmed = False
            log.warning(
                "revocation not acknowledged by a replica",
                extra={"event": "revocation_unreplicated", "waited_ms": round((time.perf_counter() - started) * 1e3)},
            )
    return confirmed


def _masters(names: list[str]) -> list[tuple[redis.Redis, str]]:
    """(a client of the master, one written key it holds) for each master the keys live on."""
    client = redis_store.client
    if not isinstance(client, RedisCluster):
        return [(client, names[0])]
    by_node: dict[str, tuple[redis.Redis, str]] = {}
    for name in names:
        node = client.get_node_from_key(name)
        by_node.setdefault(node.name, (client.get_redis_connection(node), name))
    return list(by_node.values())


def _marker(name: str) -> str:
    """A key in ``name``'s hash slot: its hash tag, or (no tag) the whole name as the tag."""
    start = name.find("{")
    end = name.find("}", start + 1) if start >= 0 else -1
    tag = name[start + 1 : end] if start >= 0 and end > start + 1 else name
    return f"sv:auth:v1:replsync:{{{tag}}}"


def _wait(server: redis.Redis, name: str, timeout_ms: int) -> int:
    """Replicas that acknowledged a marker write made on this connection after the revocation's writes."""
    pipe = server.pipeline(transaction=False)  # one connection: WAIT counts that connection's last write
    pipe.set(_marker(name), "1", px=_MARKER_TTL_MS)
    pipe.execute_command("WAIT", 1, timeout_ms)
    return int(pipe.execute()[-1])


def _has_replica(server: redis.Redis) -> bool:
    key = id(server.connection_pool)
    hit = _replicas.get(key)
    if hit is not None and time.monotonic() - hit[0] < _INFO_SECONDS:
        return hit[1]
    info = server.info("replication")
    found = info.get("role") == "master" and int(info.get("connected_slaves", 0)) > 0
    _replicas[key] = (time.monotonic(), found)
    return found


def forget_topology() -> None:
    """Drop the cached replica answers (tests that add or remove a replica)."""
    _replicas.clear()
