"""`start_dedicated_server`: kong-pdk's dedicated-server CLI (`kong_pdk/cli.py`), serving with `transport.UnixServer`.

Same flags as kong-pdk: ``-p/--kong-prefix/-kong-prefix``, ``--socket-name`` (default ``<name>.sock``),
``--listen-queue-size``, ``--no-lua-style``, ``-v``, ``--version``, ``--dump/-dump`` (a one-element JSON list, no
trailing newline, byte-identical to kong-pdk's). ``-m`` and ``-g`` are accepted and ignored. Our own:
``--budget-ms`` (each RPC waiting for plugin code is answered within it; default 1000, at most 60000),
``--drain-s`` (SIGTERM drain limit), ``--request-id-header``.

``SV_PLUGIN_SERVER=kong-pdk`` in the environment hands the same call to kong-pdk's own server (the fallback; Kong
passes a variable to its plugin servers only when kong.conf names it: ``nginx_main_env = SV_PLUGIN_SERVER=kong-pdk``).

Log lines are JSON objects, one per line on stderr (Kong copies plugin-server output into its error log):
``{"time", "level", "plugin", "pid", "msg"}`` plus ``request_id`` when the event's plugin read that header. The first
line is the health line: ``"msg": "started"`` with the plugin's version, the protocol and the socket.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from importlib import metadata

from kong_pluginserver.model import PluginModule
from kong_pluginserver.server import DEFAULT_BUDGET_MS, KONG_STEP_WAIT_S, PluginServer
from kong_pluginserver.transport import UnixServer, install_sigterm

DEFAULT_SOCKET_NAME = "python_pluginserver.sock"
SERVER_ENV = "SV_PLUGIN_SERVER"
SERVERS = ("kong-pluginserver", "kong-pdk")
PROTOCOL = "MsgPack:1"
MAX_BUDGET_MS = 60_000  # Kong's own read timeout: a budget must stay inside it


def version() -> str:
    try:
        return metadata.version("kong-pluginserver")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "0+unknown"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Kong Python plugin server (kong-pdk protocol and plugin API).")
    parser.add_argument(
        "-p", "--kong-prefix", "-kong-prefix", dest="prefix", metavar="prefix", default="/usr/local/kong/",
        help="unix domain socket directory (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument("-v", "--verbose", action="count", default=1, help="more logging")
    parser.add_argument("--version", "-version", action="version", version=f"%(prog)s {version()}")
    parser.add_argument("--socket-name", dest="socket_name", default=DEFAULT_SOCKET_NAME)
    parser.add_argument("--listen-queue-size", type=int, dest="listen_queue_size", default=4096)
    parser.add_argument("--no-lua-style", action="store_true", dest="no_lua_style", default=False,
                        help='PDK calls return data (errors raise PDKException) instead of (data, err)')  # fmt: skip
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("-m", "--multiprocessing", dest="multiprocessing", action="store_true", help="ignored")
    mode.add_argument("-g", "--gevent", dest="gevent", action="store_true", help="ignored")
    parser.add_argument("--dump", "-dump", dest="dump", action="store_true", help="dump plugin info to stdout")
    parser.add_argument("--budget-ms", type=int, default=DEFAULT_BUDGET_MS,
                        help="answer every RPC waiting for plugin code within this (%(default)s)")  # fmt: skip
    parser.add_argument("--drain-s", type=float, default=10.0, help="SIGTERM: longest wait for in-flight events")
    parser.add_argument("--request-id-header", default="x-request-id", help="header logged as request_id")
    parser.add_argument("--step-wait-s", type=float, default=KONG_STEP_WAIT_S, help=argparse.SUPPRESS)  # tests
    args = parser.parse_args(argv)
    if not 1 <= args.budget_ms <= MAX_BUDGET_MS:
        parser.error(f"--budget-ms must be between 1 and {MAX_BUDGET_MS}")
    if not args.dump and not os.path.exists(args.prefix):
        raise OSError(f"path {args.prefix} doesn't exist, can't create unix socket file")
    return args


class JsonFormatter(logging.Formatter):
    def __init__(self, plugin: str) -> None:
        super().__init__()
        self.plugin = plugin
        self.pid = os.getpid()

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "plugin": self.plugin,
            "pid": self.pid,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            line["request_id"] = rid
        fields = getattr(record, "fields", None)
        if fields:
            line.update(fields)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        # ensure_ascii: any byte a plugin echoes (surrogate-escaped) becomes \udcXX, never an encoding error
        return json.dumps(line, ensure_ascii=True, default=str)


def setup_logging(plugin: str, verbose: int) -> None:
    """kong-pdk's level (WARNING - verbose, i.e. info by default) for the root logger: plugin code that logs
    through `logging` gets the same JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(plugin))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose <= 1 else logging.DEBUG)


def selected_server() -> str:
    choice = os.environ.get(SERVER_ENV, "").strip() or SERVERS[0]
    if choice not in SERVERS:
        sys.stderr.write(f"{SERVER_ENV}={choice!r}: expected one of {', '.join(SERVERS)}\n")
        raise SystemExit(2)
    return choice


def start_dedicated_server(name, plugin, _version=None, _priority=0, _schema=None, argv=None) -> None:
    """Drop-in for ``kong_pdk.cli.start_dedicated_server`` (same arguments, same CLI)."""
    if selected_server() == "kong-pdk":
        from kong_pdk import cli as pdk_cli

        original = getattr(pdk_cli, "_kong_pdk_start_dedicated_server", pdk_cli.start_dedicated_server)
        if argv is not None:
            sys.argv = [sys.argv[0], *argv]
        return original(name, plugin, _version, _priority, _schema)
    from kong_pluginserver import boot  # not at module level: importing it as __main__'s first import patches

    boot.patch()  # normally done by the entry file's first import (before the plugin modules load)
    args = parse(argv)
    module = PluginModule(name, plugin, _version, _priority, list(_schema) if _schema is not None else [])
    if args.dump:
        sys.stdout.write(json.dumps([module.info()]))
        sys.exit(0)
    setup_logging(name, args.verbose)
    log = logging.getLogger("kong_pluginserver")
    socket_name = f"{name}.sock" if args.socket_name == DEFAULT_SOCKET_NAME else args.socket_name
    ps = PluginServer(
        module,
        lua_style=not args.no_lua_style,
        budget_ms=args.budget_ms,
        request_id_header=args.request_id_header,
        step_wait_s=args.step_wait_s,
    )
    path = os.path.join(args.prefix, socket_name)
    server = UnixServer(ps, path, args.listen_queue_size, drain_s=args.drain_s)
    lsock = server.listen()
    install_sigterm(server)
    log.info(
        "started",
        extra={"fields": {"version": _version, "server": f"kong-pluginserver {version()}", "protocol": PROTOCOL,
                          "socket": path, "budget_ms": args.budget_ms,
                          "lua_style": ps.lua_style}},
    )  # fmt: skip
    if ps.lua_style:
        log.warning("lua-style return values are used (kong-pdk's default); --no-lua-style is recommended")
    try:
        server.serve_forever(lsock)
    except KeyboardInterrupt:
        log.info("polite exit requested, terminating...")
