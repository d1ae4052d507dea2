#!/usr/bin/env python3
"""Test plugin: reads what Kong sends as raw bytes and hands it back (kong_pluginserver's byte contract).

access: get_header("x-latin") → set_header("x-echo", it); get_headers(); get_query(); get_raw_body(); then
ctx.shared.set("seen", the type names and lengths). log: log.serialize() → json.loads → ctx.shared.set("log", the
querystring it parsed). With config.exit the access phase answers kong.response.exit(401) as its first call and then
keeps calling the PDK (kong-python-pdk #137's pattern); config.raise raises and config.sleep blocks after one call.
"""

import json
import time

version = "0.1.0"
priority = 1000
Schema = (
    {"exit": {"type": "boolean", "default": False}},
    {"raise": {"type": "boolean", "default": False}},
    {"sleep": {"type": "number", "default": 0}},
)


class Plugin:
    def __init__(self, config):
        self.config = config

    def access(self, kong):
        if self.config.get("exit"):
            kong.response.exit(401, '{"message":"no"}')
            kong.request.get_header("x-latin")  # after exit: must return at once, never park a thread
            kong.ctx.shared.set("after-exit", True)
            return
        latin = kong.request.get_header("x-latin")
        if self.config.get("sleep"):
            time.sleep(self.config["sleep"])  # blocking I/O stand-in
        if self.config.get("raise"):
            raise RuntimeError("scripted")
        kong.service.request.set_header("x-echo", latin)
        headers = kong.request.get_headers()
        query = kong.request.get_query()
        body = kong.request.get_raw_body()
        seen = {"latin": [type(latin).__name__, len(latin)], "headers": sorted(headers), "query": sorted(query),
                "body": [type(body).__name__, len(body)]}  # fmt: skip
        kong.ctx.shared.set("seen", seen)

    def log(self, kong):
        record = json.loads(kong.log.serialize())
        kong.ctx.shared.set("log", record["request"]["querystring"])


if __name__ == "__main__":
    from kong_pluginserver import start_dedicated_server

    start_dedicated_server("t-bytes", Plugin, version, priority, Schema)
