#!/usr/bin/env python3
"""Benchmark yardstick: a NAÏVE sv-quota, Kong's rate-limiting plugin rewritten in Python. Never deploy this.

Same job as sv-quota on the happy path of a by-user route (count the request against the user's limits, refuse
above them, send rate-limit headers, count 4xx answers for abuse detection in log), but the way Kong's own
`rate-limiting` (policy redis) does it: one Redis ``EVAL`` (the script text sent every time) per configured period,
one more call for the abuse block, one PDK call per response header, and a log phase that always serializes.
"""

import json
import time

import redis

Schema = (
    {"periods": {"type": "map", "keys": {"type": "string"}, "values": {"type": "integer"}, "required": True}},
    {"redis_port": {"type": "integer", "default": 6379, "required": True}},
)
version = "0.1.0"
priority = 910

INCR = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""
SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_clients = {}


class Plugin:
    def __init__(self, config):
        self.periods = dict(config["periods"])
        port = config.get("redis_port") or 6379
        if port not in _clients:
            _clients[port] = redis.Redis(port=port, socket_timeout=0.05)
        self.redis = _clients[port]

    def access(self, kong):
        try:
            self._access(kong)
        except Exception:  # noqa: BLE001 (the yardstick still fails closed)
            kong.response.exit(500, json.dumps({"status": 500}), {"Content-Type": "application/problem+json"})

    def _access(self, kong):
        identity = kong.ctx.shared.get("sv_identity")
        user = identity.get("sub") if isinstance(identity, dict) else kong.client.get_forwarded_ip()
        now = int(time.time())
        if self.redis.exists(f"naive:block:{user}"):
            return kong.response.exit(429, json.dumps({"status": 429}), {"Content-Type": "application/problem+json"})
        remaining = {}
        for period, limit in self.periods.items():
            size = SECONDS[period]
            used = self.redis.eval(INCR, 1, f"naive:{user}:{period}:{now // size}", size)
            remaining[period] = limit - used
            if used > limit:
                return kong.response.exit(429, json.dumps({"status": 429}), {"Retry-After": str(size - now % size)})
        tightest = min(remaining, key=remaining.get)
        kong.response.set_header("RateLimit-Limit", str(self.periods[tightest]))
        kong.response.set_header("RateLimit-Remaining", str(remaining[tightest]))
        kong.response.set_header("RateLimit-Reset", str(SECONDS[tightest] - now % SECONDS[tightest]))

    def log(self, kong):
        record = json.loads(kong.log.serialize())
        status = (record.get("response") or {}).get("status")
        if status in (401, 403, 429):
            self.redis.incr(f"naive:strikes:{record.get('client_ip')}")


if __name__ == "__main__":
    from kong_pdk.cli import start_dedicated_server

    start_dedicated_server("naive-quota", Plugin, version, priority, Schema)
