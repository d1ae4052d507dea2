"""The `kong` object a plugin phase receives: kong-pdk's proxy semantics (`kong_pdk/pdk/__init__.py`), cheaper.

* Any attribute path is a PDK method: ``kong.request.get_header("x")`` sends ``{"Method": "kong.request.get_header",
  "Args": ["x"]}`` and waits for Kong's answer (the event's thread parks until the server loop hands it over).
* Lua style (kong-pdk's default) returns ``(data, err)``; ``--no-lua-style`` returns ``data`` and raises
  `PDKException` ("exception from <method>: <err>") when Kong sent an error (StepError, Kong 2.8 only).
* Arguments of ``kong.log.*`` whose type is not str/int/list/dict become ``str(arg)`` (kong-pdk PR #117).
* ``kong.response.exit`` / ``kong.response.error`` do not wait for an answer and return None at once.

Unlike kong-pdk, intermediate path objects are built once per path and reused (kong-pdk builds one object per
attribute access; they are shared by every event: the current event is the calling thread's), and a PDK call made
after a terminal call returns at once (None / ``(None, None)``) instead of blocking a thread forever
(kong-python-pdk #137).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

try:  # plugins written for kong-pdk may catch its exception class: raise that very class
    from kong_pdk.exception import PDKException
except ImportError:  # pragma: no cover - kong-pdk is a dependency of the plugins package

    class PDKException(Exception):  # type: ignore[no-redef]
        pass


TERMINAL_METHODS = frozenset(("kong.response.exit", "kong.response.error"))
_LOG_OK = (str, int, list, dict)


def sanitize_log_args(args: tuple) -> list:
    """kong-pdk's rule for kong.log.*: exact types str/int/list/dict pass, anything else is str()-ed."""
    return [a if type(a) in _LOG_OK else str(a) for a in args]


class Node:
    """``kong.<a>.<b>...``: attribute access yields the child path (cached), calling it makes the PDK call."""

    __slots__ = ("_call", "_children", "_path")

    def __init__(self, path: str, call: Callable[[str, tuple], Any]) -> None:
        self._path = path
        self._call = call
        self._children: dict[str, Node] = {}

    def __getattr__(self, name: str) -> Node:
        if name.startswith("__"):
            raise AttributeError(name)
        child = self._children.get(name)
        if child is None:
            child = self._children[name] = Node(self._path + "." + name, self._call)
        return child

    def __call__(self, *args: Any) -> Any:
        return self._call(self._path, args)

    def __repr__(self) -> str:
        return f"<kong PDK {self._path}>"
