#!/usr/bin/env python3
"""Bench only: run sv-jwt or naive-jwt in a plugin server that counts the RPCs it answers.

`run(name)` (from sv-jwt-counted.py, naive-jwt-counted.py): the same plugin class under the same name, in a kong-pdk
dedicated server whose HandleEvent / Step / StepError are counted (the PDK round trips of each request). On SIGTERM
the counts go to `<prefix>/rpc-counts-<name>.json`. Counting costs CPU: never use this server for CPU figures.
"""

import importlib.util
import json
import signal
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ENTRIES = {"sv-jwt": HERE.parents[1] / "kong-plugins" / "plugins" / "sv-jwt.py", "naive-jwt": HERE / "naive-jwt.py"}


def load(name):
    spec = importlib.util.spec_from_file_location(name.replace("-", "_"), ENTRIES[name])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(name):
    module = load(name)
    from kong_pdk import server
    from kong_pdk.cli import start_dedicated_server

    counts = {"HandleEvent": 0, "Step": 0}

    def counted(method, key):
        def wrapper(self, *args):
            counts[key] += 1
            return method(self, *args)

        return wrapper

    # HandleEvent answers with the first PDK call; each Step variant (Step, StepError, StepMultiMap, ...) returns
    # one PDK call's result and answers with the next call or "ret".
    server.PluginServer.handle_event = counted(server.PluginServer.handle_event, "HandleEvent")
    for attr in dir(server.PluginServer):
        if attr.startswith("step"):
            setattr(server.PluginServer, attr, counted(getattr(server.PluginServer, attr), "Step"))
    prefix = sys.argv[sys.argv.index("-p") + 1] if "-p" in sys.argv else "/tmp"

    def dump(*_):
        Path(prefix, f"rpc-counts-{name}.json").write_text(json.dumps(counts))
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, dump)
    start_dedicated_server(name, module.Plugin, module.version, module.priority, module.Schema)
