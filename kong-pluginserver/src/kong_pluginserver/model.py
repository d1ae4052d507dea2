"""The plugin server's objects: the plugin module, its instances and their events, and the RPC error types.

See ``kong_pluginserver.server`` for the protocol and how events run.
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from greenlet import greenlet

    from kong_pluginserver.transport import Conn

PHASES = ("certificate", "rewrite", "log", "access", "preread", "response")  # kong_pdk/module.py order
ID_SPACE = 1 << 31  # ids stay positive 31-bit integers (Lua numbers, msgpack ints)


class ServerError(Exception):
    """An RPC error answered as ``[1, msgid, str(exc), None]``."""


class EventAbandoned(BaseException):
    """Raised inside plugin code whose event the server gave up on (budget spent, Kong gone): unwind and return."""


class Deferred:
    """A reply sent later (the plugin code waits for I/O, or builds an instance)."""


DEFERRED = Deferred()


def random_id() -> int:
    return secrets.randbelow(ID_SPACE)


class PluginModule:
    """The one plugin of a dedicated server (kong-pdk's `Module` built from `start_dedicated_server` arguments)."""

    def __init__(self, name: str, cls: type, version: str | None, priority: int, schema: Any) -> None:
        self.name = name
        self.cls = cls
        self.version = version
        self.priority = priority
        self.schema = schema if schema is not None else []
        self.phases = [p for p in PHASES if hasattr(cls, p)]
        self.load_time = time.time()
        try:
            self.mtime = os.stat(sys.path[0] or ".").st_mtime  # kong-pdk: mtime of FILEPATH (= sys.path[0])
        except OSError:
            self.mtime = 0.0
        self.last_start_instance_time = 0.0
        self.last_close_instance_time = 0.0

    def info(self) -> dict[str, Any]:
        return {
            "Name": self.name,
            "Phases": self.phases,
            "Priority": self.priority,
            "Version": self.version,
            "Schema": {"name": self.name, "fields": [{"config": {"type": "record", "fields": self.schema}}]},
        }


class Instance:
    __slots__ = ("config", "name", "obj", "start_time")

    def __init__(self, name: str, obj: Any, config: Any) -> None:
        self.name = name
        self.obj = obj
        self.config = config
        self.start_time = time.time()


class Event:
    """One phase of one request. ``waiting`` is the RPC (conn, msgid) that the plugin's next output answers; None
    while the plugin waits for Kong's Step."""

    __slots__ = ("abandoned", "deadline", "done", "glet", "id", "in_advance", "parked_at", "phase", "request_id",
                 "waiting")  # fmt: skip

    def __init__(self, eid: int, phase: str, glet: greenlet) -> None:
        self.id = eid
        self.phase = phase
        self.glet = glet
        self.done = False  # a terminal call went out: nothing more goes to Kong for this event
        self.abandoned = False
        self.in_advance = False  # running inside the hub's _advance (its output is the return of that switch)
        self.waiting: tuple[Conn, Any] | None = None
        self.deadline = 0.0  # the budget of the RPC in ``waiting``
        self.parked_at = 0.0  # when its last PDK call went to Kong
        self.request_id: str | None = None
