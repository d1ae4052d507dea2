"""Brute-force defence: Redis counters per (account, IP) and per IP with doubling back-off, never a permanent lock.

After ``threshold`` failures inside the window, each further failure sets a lock of
``base * 2 ** (failures - threshold)`` seconds (capped). A success clears the (account, IP) counter.
"""

from __future__ import annotations

from flask import current_app

from .. import metrics
from .. import redis_keys as keys
from ..errors import APIError
from ..extensions import redis_store

_FAIL = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
local over = n - tonumber(ARGV[2])
if over >= 0 then
  local wait = math.min(tonumber(ARGV[3]) * (2 ^ over), tonumber(ARGV[4]))
  redis.call('SET', KEYS[2], '1', 'EX', math.floor(wait))
end
return n
"""


def _pairs(email: str, ip: str) -> list[tuple[str, int]]:
    cfg = current_app.config
    return [
        (keys.throttle_account_ip(email, ip), cfg["THROTTLE_ACCOUNT_IP_THRESHOLD"]),
        (keys.throttle_ip(ip), cfg["THROTTLE_IP_THRESHOLD"]),
    ]


def check(email: str, ip: str) -> None:
    """Raise 429 with Retry-After while any lock for this (account, IP) or IP is set."""
    pipe = redis_store.client.pipeline(transaction=False)
    for counter, _ in _pairs(email, ip):
        pipe.ttl(keys.throttle_lock(counter))
    ttl = max(pipe.execute())
    if ttl > 0:
        metrics.inc("sv_auth_failed_attempts_total", reason="throttled")
        metrics.inc("sv_auth_logins_total", outcome="throttled")
        raise APIError.throttled(ttl)


def record_failure(email: str, ip: str, reason: str) -> None:
    cfg = current_app.config
    client = redis_store.client
    script = client.register_script(_FAIL)
    for counter, threshold in _pairs(email, ip):
        script(
            keys=[counter, keys.throttle_lock(counter)],
            args=[cfg["THROTTLE_WINDOW_SECONDS"], threshold, cfg["THROTTLE_BASE_SECONDS"], cfg["THROTTLE_MAX_SECONDS"]],
        )
    metrics.inc("sv_auth_failed_attempts_total", reason=reason)


def success_keys(email: str, ip: str) -> list[str]:
    """What a success clears: the (account, IP) counter and its lock (one hash slot). /login deletes them in the
    round trip that creates its session (sessions/store.py ``create``); other callers use ``record_success``."""
    counter = keys.throttle_account_ip(email, ip)
    return [counter, keys.throttle_lock(counter)]


def record_success(email: str, ip: str) -> None:
    redis_store.client.delete(*success_keys(email, ip))
