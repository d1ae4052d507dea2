#!/usr/bin/env python3
"""A stand-in for sv-jwt's identity hand-off, for the native pre-/post-function tests (a kong-pdk dedicated server).

Priority 1450 (sv-jwt's). In access: appends "t-marker" to the list kong.ctx.shared.order (set by a pre-function
chunk, so the Lua → Python → Lua round trip shows), then, when the request carries ``X-Test-Auth: yes``, sets
kong.ctx.shared.sv_identity = {"authenticated": True, "sub": "u-1"}; ``X-Test-Auth: truthy`` sets
{"authenticated": "yes"} (not the boolean the guard demands). Any other request: no identity, like a failed-open sv-jwt.
"""

version = "0.1.0"
priority = 1450
Schema = ({"label": {"type": "string"}},)


class Plugin:
    def __init__(self, config):
        self.config = config

    def access(self, kong):
        mark = kong.request.get_header("x-test-auth")
        order = kong.ctx.shared.get("order")
        kong.ctx.shared.set("order", [*(order if isinstance(order, list) else []), "t-marker"])
        if mark == "yes":
            kong.ctx.shared.set("sv_identity", {"authenticated": True, "sub": "u-1"})
        elif mark == "truthy":
            kong.ctx.shared.set("sv_identity", {"authenticated": "yes", "sub": "u-1"})


if __name__ == "__main__":
    from kong_pdk.cli import start_dedicated_server

    start_dedicated_server("t-marker", Plugin, version, priority, Schema)
