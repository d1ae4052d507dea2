"""Kong's bundled ``file-log`` plugin, run natively in Python (Kong 3.9).

Kong sources (Kong/kong): `kong/plugins/file-log/handler.lua` (PRIORITY 9, a ``log`` handler only) and
`kong/plugins/file-log/schema.lua`; the record is `kong/pdk/log.lua` ``serialize`` (`kong_emulator.pdk.serialize`).

* ``log``: each ``custom_fields_by_lua`` expression is compiled in Kong's sandbox and run, its result set with
  ``kong.log.set_serialize_value(key, value)`` (here in the emulator's LuaJIT runtime, the same one that runs
  pre-/post-function; a failing expression fails the handler, so no line is written, as in Kong); then
  ``cjson.encode(kong.log.serialize()) .. "\\n"`` is appended to ``path`` with one ``write`` on a file opened
  ``O_WRONLY|O_CREAT|O_APPEND``, mode 0644. The descriptor is cached per path; ``reopen = true`` closes and reopens
  it on every request (log rotation). An open failure is logged (``failed to open the file: <strerror>``) and the
  line is lost.
* What the line holds is Kong's ``kong.log.serialize()``: the request (``id``, method, uri, url, querystring,
  headers, size), ``upstream_uri``, ``response`` (status, headers, size), ``latencies`` (``kong``, ``proxy`` =
  upstream, ``request``, ``receive``), ``route``, ``service``, ``consumer``, ``authenticated_entity``,
  ``client_ip``, ``started_at``, ``source``, ``workspace``. Kong replaces the values of the ``Authorization`` and
  ``Proxy-Authorization`` request headers by ``REDACTED`` and nothing else: cookies, ``X-Api-Key``-style headers,
  tokens in the query string and ``Set-Cookie`` response headers are written as sent. Values set with
  ``kong.log.set_serialize_value`` (``a.b.c`` paths) are applied, as ``serialize`` does.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from typing import Any

from kong_emulator import KONG_VERSION
from kong_emulator.config.entities import Plugin, PluginInfo
from kong_emulator.pdk.base import cjson_encode

log = logging.getLogger("kong_emulator")

NAME = "file-log"
PRIORITY = 9
FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND
MODE = 0o644  # S_IRUSR | S_IWUSR | S_IRGRP | S_IROTH


def _valid_filename(value: Any) -> str | None:
    """The ``match``/``err`` pair of Kong's ``path`` (the emulator's ``match`` does not take a field's ``err``)."""
    return None if isinstance(value, str) and re.fullmatch(r"[^*&%\\`]+", value) else "not a valid filename"


def schema() -> dict[str, Any]:
    """``kong/plugins/file-log/schema.lua`` (3.9); ``custom_fields_by_lua`` is ``typedefs.lua_code``."""
    return {
        "name": NAME,
        "fields": [
            {
                "config": {
                    "type": "record",
                    "fields": [
                        {
                            "path": {
                                "type": "string",
                                "required": True,
                                # Kong: match = [[^[^*&%%\`]+$]], err = "not a valid filename"
                                "custom_validator": _valid_filename,
                                "description": "The file path of the output log file.",
                            }
                        },
                        {"reopen": {"type": "boolean", "required": True, "default": False}},
                        {
                            "custom_fields_by_lua": {
                                "type": "map",
                                "keys": {"type": "string", "len_min": 1},
                                "values": {"type": "string", "len_min": 1},
                            }
                        },
                    ],
                }
            }
        ],
    }


def info() -> PluginInfo:
    return PluginInfo(name=NAME, version=KONG_VERSION, priority=PRIORITY, phases=("log",), schema=schema())


def apply_serialize_values(record: dict[str, Any], values: list[tuple[str, Any]]) -> dict[str, Any]:
    """``edit_result``: each ``set_serialize_value(key, value)`` in order, ``a.b.c`` keys as nested tables."""
    for key, value in values:
        node = record
        *parents, last = key.split(".")
        for token in parents:
            child = node.get(token)
            if not isinstance(child, dict):
                child = node[token] = {}
            node = child
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return record


def _long_string(text: str) -> str:
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    return f"[{eq}[{text}]{eq}]"


class FileLog:
    """The native handler the `NativeRunner` calls; ``states(worker)`` is the worker's LuaJIT state."""

    runs_as = "natively in Python (kong_emulator.native.file_log)"

    def __init__(self, states=None) -> None:
        self.name = NAME
        self.info = info()
        self.states = states
        self._fds: dict[str, int] = {}
        self._lock = threading.Lock()
        self._compiled: dict[tuple[int, str], tuple[dict, Any]] = {}

    def startup_notes(self, plugin: Plugin) -> list[str]:
        notes = []
        if plugin.config.get("custom_fields_by_lua") and self.states is None:
            notes.append("custom_fields_by_lua is ignored (no Lua runtime in this emulator)")
        return notes

    def run_phase(self, plugin: Plugin, phase: str, ctx, worker: int) -> None:
        if phase != "log" or ctx.snapshot is None:
            return
        conf = plugin.config
        if conf.get("custom_fields_by_lua") and self.states is not None:
            if not self._custom_fields(plugin, ctx, worker):
                return
        record = apply_serialize_values(dict(ctx.snapshot.serialized), ctx.nginx_ctx.get("serialize_values") or [])
        self.write(conf, cjson_encode(record) + "\n")

    def _custom_fields(self, plugin: Plugin, ctx, worker: int) -> bool:
        """Run each expression in the sandbox and ``set_serialize_value`` its result; False when one fails."""
        from kong_emulator.native.runtime import NativeCall
        from kong_emulator.pdk import LuaError

        state = self.states(worker)
        call = NativeCall(ctx, state.pdk.env, "log", plugin.name)
        key = (worker, plugin.id)
        cached = self._compiled.get(key)
        try:
            if cached is None or cached[0] is not plugin.config:
                chunks = [
                    f"kong.log.set_serialize_value({_long_string(name)}, (function()\n{code}\nend)())"
                    for name, code in plugin.config["custom_fields_by_lua"].items()
                ]
                cached = self._compiled[key] = (plugin.config, state.compile({"log": chunks}))
            status, message = state.run(cached[1][b"log"], call, plugin.name)
        except LuaError as exc:
            status, message = "error", str(exc)
        if status == "error":
            call.log("err", message or "")
            return False
        return True

    def write(self, conf: dict[str, Any], line: str) -> None:
        path = conf["path"]
        data = line.encode("utf-8", "surrogateescape")
        with self._lock:
            fd = self._fds.get(path)
            if fd is not None and conf.get("reopen"):
                os.close(fd)
                del self._fds[path]
                fd = None
            if fd is None:
                try:
                    fd = self._fds[path] = os.open(path, FLAGS, MODE)
                except OSError as exc:
                    log.error("[kong] [file-log] failed to open the file: %s", exc.strerror)
                    return
            try:
                os.write(fd, data)
            except OSError as exc:
                log.error("[kong] [file-log] failed to write to %s: %s", path, exc.strerror)

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
