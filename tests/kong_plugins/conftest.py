"""FakeKong: a recording stand-in for the PDK object a handler receives (python-style returns, --no-lua-style).

Unit tests of handlers only; anything that claims Kong behaviour is tested through the emulator instead.
"""

from __future__ import annotations

from typing import Any

import pytest


class _Path:
    def __init__(self, fake: FakeKong, name: str) -> None:
        self._fake, self._name = fake, name

    def __getattr__(self, attr: str) -> _Path:
        return _Path(self._fake, f"{self._name}.{attr}")

    def __call__(self, *args: Any) -> Any:
        return self._fake._call(self._name, args)


class FakeKong:
    """`FakeKong(returns={"kong.request.get_headers": {...}})`; `.calls` lists (method, args) in order."""

    def __init__(self, returns: dict[str, Any] | None = None) -> None:
        self.returns = dict(returns or {})
        self.calls: list[tuple[str, tuple]] = []
        self.shared: dict[str, Any] = {}
        self.exited: tuple | None = None

    def __getattr__(self, attr: str) -> _Path:
        if attr != "kong":
            raise AttributeError(attr)
        return _Path(self, "kong")

    def _call(self, method: str, args: tuple) -> Any:
        if self.exited is not None:
            raise AssertionError(f"PDK call {method} after kong.response.exit (leaks an event in kong-pdk 0.36)")
        self.calls.append((method, args))
        if method == "kong.ctx.shared.set":
            self.shared[args[0]] = args[1]
            return None
        if method == "kong.ctx.shared.get":
            return self.shared.get(args[0])
        if method in ("kong.response.exit", "kong.response.error"):
            self.exited = args
            return None
        value = self.returns.get(method)
        return value(*args) if callable(value) else value

    def called(self, method: str) -> list[tuple]:
        return [args for name, args in self.calls if name == method]


@pytest.fixture
def fake_kong():
    return FakeKong
