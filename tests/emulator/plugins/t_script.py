#!/usr/bin/env python3
"""A scriptable external plugin for the emulator's protocol tests (a kong-pdk dedicated server).

Its config holds, per phase, a JSON list of steps:
  ["kong.request.get_header", ["x-a"]]   call that PDK method (args: JSON; {"__bytes__": hex} sends bytes)
  ["!raise", "message"]                  raise (kong-pdk never answers: Kong waits for the read timeout)
  ["!sleep", 0.2]                        time.sleep
After its steps (or right before a terminal kong.response.exit/error) the plugin stores the repr() of every
(data, err) result with kong.ctx.shared.set("results:<phase>", [...]) unless config.report is false.
With config.fail_closed, any exception becomes kong.response.exit(500, ...) (what a real plugin must do).
"""

import json
import time

version = "0.1.0"
priority = 1000
Schema = (
    {"rewrite": {"type": "string"}},
    {"access": {"type": "string"}},
    {"response": {"type": "string"}},
    {"log": {"type": "string"}},
    {"report": {"type": "boolean", "default": True}},
    {"fail_closed": {"type": "boolean", "default": False}},
    {"label": {"type": "string"}},
)

TERMINAL = ("kong.response.exit", "kong.response.error")


def _args(value):
    if isinstance(value, dict):
        if set(value) == {"__bytes__"}:
            return bytes.fromhex(value["__bytes__"])
        return {k: _args(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_args(v) for v in value]
    return value


def _resolve(kong, path):
    fn = kong
    for part in path.split(".")[1:]:
        fn = getattr(fn, part)
    return fn


class Plugin:
    def __init__(self, config):
        self.config = config

    def _run(self, kong, phase):
        steps = json.loads(self.config.get(phase) or "[]")
        if self.config.get("fail_closed"):
            try:
                return self._steps(kong, phase, steps)
            except Exception:  # noqa: BLE001 - fail closed on anything, as docs/architecture.md §2 requires
                return kong.response.exit(500, {"message": "plugin failed closed"})
        return self._steps(kong, phase, steps)

    def _steps(self, kong, phase, steps):
        results = []
        for step in steps:
            name, args = step[0], step[1] if len(step) > 1 else []
            if name == "!raise":
                raise RuntimeError(args or "scripted failure")
            if name == "!sleep":
                time.sleep(args)
                continue
            if name in TERMINAL:
                self._report(kong, phase, results)
                return _resolve(kong, name)(*_args(args))
            results.append(repr(_resolve(kong, name)(*_args(args))))
        self._report(kong, phase, results)

    def _report(self, kong, phase, results):
        if self.config.get("report", True):
            kong.ctx.shared.set("results:" + phase, results)

    def rewrite(self, kong):
        self._run(kong, "rewrite")

    def access(self, kong):
        self._run(kong, "access")

    def response(self, kong):
        self._run(kong, "response")

    def log(self, kong):
        self._run(kong, "log")


if __name__ == "__main__":
    from kong_pdk.cli import start_dedicated_server

    start_dedicated_server("t-script", Plugin, version, priority, Schema)
