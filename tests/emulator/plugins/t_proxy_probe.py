#!/usr/bin/env python3
"""A probe plugin for the emulator's end-to-end proxy tests (a kong-pdk dedicated server,
run with --no-lua-style: PDK calls return the value and raise on error).

access:   with config.captures, sends the route's URI captures upstream as `X-Probe-Captures` (JSON)
response: with config.response, reports what the service answered (`X-Probe-Upstream-Status`,
          `X-Probe-Upstream-Header` = the service's `X-Up`) and replaces the `X-Up` header
log:      with config.log_file, sleeps config.log_delay seconds, then writes what it saw (serialize(), status,
          source, its own wall-clock time) to that file as JSON
"""

import json
import os
import time

version = "0.1.0"
priority = 900
Schema = (
    {"captures": {"type": "boolean", "default": False}},
    {"response": {"type": "boolean", "default": False}},
    {"log_file": {"type": "string"}},
    {"log_delay": {"type": "number", "default": 0}},
)


class Plugin:
    def __init__(self, config):
        self.config = config

    def access(self, kong):
        if self.config.get("captures"):
            caps = kong.request.get_uri_captures()
            kong.service.request.set_header("X-Probe-Captures", json.dumps(caps, sort_keys=True))

    def response(self, kong):
        if self.config.get("response"):
            status = kong.service.response.get_status()
            upstream_value = kong.service.response.get_header("X-Up")
            kong.response.set_header("X-Probe-Upstream-Status", str(status))
            kong.response.set_header("X-Probe-Upstream-Header", str(upstream_value))
            kong.response.set_header("X-Up", "changed-by-probe")

    def log(self, kong):
        path = self.config.get("log_file")
        if not path:
            return
        time.sleep(self.config.get("log_delay") or 0)
        serialized = kong.log.serialize()
        status = kong.response.get_status()
        source = kong.response.get_source()
        record = {"serialized": json.loads(serialized), "status": status, "source": source, "at": time.time()}
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as fh:
            json.dump(record, fh)
        os.replace(tmp, path)


if __name__ == "__main__":
    from kong_pdk.cli import start_dedicated_server

    start_dedicated_server("t-proxy-probe", Plugin, version, priority, Schema)
