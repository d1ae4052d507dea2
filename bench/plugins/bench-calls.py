#!/usr/bin/env python3
"""Benchmark plugin: makes `calls` cheap PDK calls in access (k = 1, 3, 6 in `make bench`)."""

Schema = ({"calls": {"type": "integer", "default": 1, "between": [0, 64], "required": True}},)
version = "0.1.0"
priority = 1000


class Plugin:
    def __init__(self, config):
        self.calls = config.get("calls") or 0

    def access(self, kong):
        for _ in range(self.calls):
            kong.request.get_header("x-bench")


if __name__ == "__main__":
    from kong_pdk.cli import start_dedicated_server

    start_dedicated_server("bench-calls", Plugin, version, priority, Schema)
