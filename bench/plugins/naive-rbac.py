#!/usr/bin/env python3
"""Benchmark yardstick: a NAÏVE sv-rbac, the way a first Python plugin is usually written. Never deploy this.

Same job as sv-rbac on the happy path (the verified identity's role must be allowed for the request's method on
this route; deny otherwise), but it reads every fact with its own PDK call on every request: the identity, the
method, the path and the route entity, and forwards the role upstream again with one set_header.
"""

import json

Schema = (
    {"roles": {"type": "array", "elements": {"type": "string"}, "required": True}},
    {"methods": {"type": "array", "elements": {"type": "string"}, "required": True}},
)
version = "0.1.0"
priority = 950


class Plugin:
    def __init__(self, config):
        self.config = config

    def access(self, kong):
        try:
            self._access(kong)
        except Exception:  # noqa: BLE001 (the yardstick still fails closed)
            kong.response.exit(500, json.dumps({"status": 500}), {"Content-Type": "application/problem+json"})

    def _access(self, kong):
        identity = kong.ctx.shared.get("sv_identity")
        method = kong.request.get_method()
        kong.request.get_path()
        route = kong.router.get_route()
        role = identity.get("role") if isinstance(identity, dict) else None
        methods = (route or {}).get("methods") or self.config["methods"]
        if role not in self.config["roles"] or method not in methods:
            return kong.response.exit(403, json.dumps({"status": 403}), {"Content-Type": "application/problem+json"})
        kong.service.request.set_header("X-User-Role", role)


if __name__ == "__main__":
    from kong_pdk.cli import start_dedicated_server

    start_dedicated_server("naive-rbac", Plugin, version, priority, Schema)
