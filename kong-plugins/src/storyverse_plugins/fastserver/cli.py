"""`start_dedicated_server`: kong-pdk's dedicated-server CLI (`kong_pdk/cli.py`), serving with `server.UnixServer`.

Same flags: ``-p/--kong-prefix/-kong-prefix``, ``--socket-name`` (default ``<name>.sock``), ``--listen-queue-size``,
``--no-lua-style``, ``-v``, ``--version``, ``--dump/-dump`` (a one-element JSON list, no trailing newline). ``-m`` and
``-g`` are accepted and ignored (there is one model here: one loop, a greenlet per event).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from storyverse_plugins.fastserver.server import PluginModule, PluginServer, UnixServer

DEFAULT_SOCKET_NAME = "python_pluginserver.sock"
VERSION = "0.36-fast"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="StoryVerse fast Kong Python plugin server (kong-pdk protocol).")
    parser.add_argument(
        "-p", "--kong-prefix", "-kong-prefix", dest="prefix", metavar="prefix", default="/usr/local/kong/",
        help="unix domain socket directory (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument("-v", "--verbose", action="count", default=1, help="more logging")
    parser.add_argument("--version", "-version", action="version", version=f"%(prog)s {VERSION}")
    parser.add_argument("--socket-name", dest="socket_name", default=DEFAULT_SOCKET_NAME)
    parser.add_argument("--listen-queue-size", type=int, dest="listen_queue_size", default=4096)
    parser.add_argument("--no-lua-style", action="store_true", dest="no_lua_style", default=False,
                        help='PDK calls return data (errors raise PDKException) instead of (data, err)')  # fmt: skip
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("-m", "--multiprocessing", dest="multiprocessing", action="store_true", help="ignored")
    mode.add_argument("-g", "--gevent", dest="gevent", action="store_true", help="ignored")
    parser.add_argument("--dump", "-dump", dest="dump", action="store_true", help="dump plugin info to stdout")
    args = parser.parse_args(argv)
    if not args.dump and not os.path.exists(args.prefix):
        raise OSError(f"path {args.prefix} doesn't exist, can't create unix socket file")
    return args


def start_dedicated_server(name, plugin, _version=None, _priority=0, _schema=None, argv=None) -> None:
    """Drop-in for ``kong_pdk.cli.start_dedicated_server`` (same arguments, same CLI)."""
    args = parse(argv)
    module = PluginModule(name, plugin, _version, _priority, list(_schema) if _schema is not None else [])
    if args.dump:
        sys.stdout.write(json.dumps([module.info()]))
        sys.exit(0)
    # kong-pdk's Logger: level WARNING - verbose, i.e. info by default; lines go to Kong's log (stdout+stderr).
    level = logging.INFO if args.verbose <= 1 else logging.DEBUG
    logger = logging.getLogger("storyverse_plugins.fastserver")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
    socket_name = f"{name}.sock" if args.socket_name == DEFAULT_SOCKET_NAME else args.socket_name
    ps = PluginServer(module, lua_style=not args.no_lua_style)
    if ps.lua_style:
        logger.warning("lua-style return values are used (kong-pdk's default); --no-lua-style is recommended")
    server = UnixServer(ps, os.path.join(args.prefix, socket_name), args.listen_queue_size)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        logger.info("polite exit requested, terminating...")
