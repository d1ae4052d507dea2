"""Kong's MessagePack-RPC client (`kong/runloop/plugin_servers/rpc/mp_rpc.lua`, `Rpc:call`), in asyncio.

Wire format, exactly as Kong sends it:

* request ``[0, msgid, "plugin.X", [params...]]``, packed like lua-MessagePack in ``string_compat`` mode
  (strings as fixstr/str16/str32, never str8 or bin); only the three raw-body PDK results go out as **bin**
  (`Bin`, Kong's ``fix_raw``);
* response ``[1, msgid, err, result]``: Kong *asserts* the type and the msgid (a Lua error, `RPCLuaError`);
* notification ``[2, label, args]``: handled inside the call, before the response (``serverPid``).

Connections come from a per-socket `SocketPool` (the OpenResty cosocket keepalive pool): one call in flight per
connection, back to the pool after each reply, so successive calls of one event may use different connections.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections import deque
from collections.abc import Callable
from typing import Any

import msgpack

KONG_READ_TIMEOUT = 60.0  # nginx's default lua_socket_read_timeout; Kong's templates never change it
KONG_POOL_SIZE = 256  # lua_socket_pool_size
_RECV_SIZE = 4096  # Kong reads with c:receiveany(4096)

# lua-MessagePack 'string_compat': str → raw family without str8; use_bin_type=False gives exactly that.
# A Lua string is bytes: the emulator holds one as a str whose non-UTF-8 bytes are surrogate escapes, and packs it
# back byte for byte (Kong never checks UTF-8, mp_rpc.lua:183); replies decode the same way.
LUA_BYTES = "surrogateescape"
_packer = msgpack.Packer(use_bin_type=False, unicode_errors=LUA_BYTES)
_bin_packer = msgpack.Packer(use_bin_type=True, unicode_errors=LUA_BYTES)


class RPCError(Exception):
    """A call that returned ``nil, err`` in Kong; ``str(exc)`` is Kong's ``err`` string."""


class RPCTimeout(RPCError):
    """No reply within the read timeout (Kong logs "no data" after 60 s; here it is "timeout")."""

    def __init__(self) -> None:
        super().__init__("timeout")


class RPCLuaError(RPCError):
    """A Lua *error* inside `Rpc:call` (failed assert, lua-MessagePack "missing bytes"), not ``nil, err``."""


class Bin(bytes):
    """A value Kong sends as msgpack **bin** (``fix_raw``: request/response raw bodies)."""

    __slots__ = ()


def pack_request(msgid: int, method: str, params: tuple) -> bytes:
    """``mp_pack({0, msg_id, method, {...}})``; a `Bin` may only appear as the ``Data`` of a Step map."""
    if params and type(params[0]) is dict and type(params[0].get("Data")) is Bin:
        return _pack_bin_step(msgid, method, params[0])
    return _packer.pack([0, msgid, method, list(params)])


def _pack_bin_step(msgid: int, method: str, step: dict) -> bytes:
    """Splice a bin ``Data`` into an otherwise string_compat request (Kong's ``fix_raw`` packer function)."""
    p = _packer
    parts = [p.pack_array_header(4), p.pack(0), p.pack(msgid), p.pack(method), p.pack_array_header(1)]
    parts.append(p.pack_map_header(len(step)))
    for k, v in step.items():
        parts.append(p.pack(k))
        parts.append(_bin_packer.pack(bytes(v)) if type(v) is Bin else p.pack(v))
    return b"".join(parts)


def _connect_error(exc: OSError) -> str:
    """The error text ngx.socket.connect gives for a failed unix connect."""
    return (exc.strerror or str(exc)).lower() if exc.errno else str(exc)


class SocketPool:
    """Idle keepalive connections to one Unix socket, for one simulated worker (OpenResty's cosocket pool).

    ``fresh_every=N`` makes every N-th acquire open a new connection even when an idle one exists (Kong does
    this whenever the pool is empty, e.g. under concurrency); 0 disables it.
    """

    def __init__(self, path: str, size: int = KONG_POOL_SIZE, fresh_every: int = 0) -> None:
        self.path = path
        self.size = size
        self.fresh_every = fresh_every
        self._idle: deque[socket.socket] = deque()
        self._acquired = 0
        self.opened = 0  # connections opened so far (for tests and stats)

    async def acquire(self) -> socket.socket:
        """An idle live connection, or a new one (``ngx.socket.connect``); raises `RPCError` on failure."""
        self._acquired += 1
        fresh = self.fresh_every and self._acquired % self.fresh_every == 0
        while self._idle and not fresh:
            sock = self._idle.pop()
            if _is_alive(sock):
                return sock
            sock.close()  # nginx drops idle pooled connections that the peer closed
        return await self._open()

    async def _open(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, self.path)
        except OSError as exc:
            sock.close()
            raise RPCError(_connect_error(exc)) from None
        self.opened += 1
        return sock

    def release(self, sock: socket.socket) -> None:
        """``c:setkeepalive()``: back to the pool, or closed when the pool is full."""
        if len(self._idle) < self.size:
            self._idle.append(sock)
        else:
            sock.close()

    def close(self) -> None:
        """Close every idle connection."""
        while self._idle:
            self._idle.pop().close()

    @property
    def idle(self) -> int:
        return len(self._idle)


def _is_alive(sock: socket.socket) -> bool:
    """True unless the peer closed the idle connection (or sent unexpected bytes)."""
    try:
        sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return True
    except OSError as exc:
        return exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK)
    return False  # EOF or stray bytes: nginx's keepalive close handler drops the connection


class RpcClient:
    """One Kong ``Rpc`` object: a msgid counter (from 1) over a shared `SocketPool`.

    Kong 3.9+ has one per plugin per worker. ``on_notification(label, args)`` receives ``[2, ...]`` messages;
    ``trace`` (a list) records ``(method, params)`` of every call, for tests.
    """

    def __init__(
        self,
        pool: SocketPool,
        timeout: float = KONG_READ_TIMEOUT,
        on_notification: Callable[[str, Any], None] | None = None,
        trace: list | None = None,
    ) -> None:
        self.pool = pool
        self.timeout = timeout
        self.on_notification = on_notification
        self.trace = trace
        self.msg_id = 0

    async def call(self, method: str, *params: Any) -> Any:
        """Send one request and return its result; raise `RPCError` where Kong returns ``nil, err``."""
        self.msg_id += 1
        msg_id = self.msg_id
        if self.trace is not None:
            self.trace.append((method, params))
        sock = await self.pool.acquire()
        try:
            async with asyncio.timeout(self.timeout):
                result = await self._exchange(sock, msg_id, pack_request(msg_id, method, params))
        except TimeoutError:
            # mp_rpc.lua:195-198: the reader fails and Kong calls c:setkeepalive() -- the connection goes back to
            # the pool while the server still owes this reply; the next call on it may read that reply instead
            self.pool.release(sock)
            raise RPCTimeout() from None
        except BaseException:
            sock.close()
            raise
        self.pool.release(sock)
        return result

    async def _exchange(self, sock: socket.socket, msg_id: int, payload: bytes) -> Any:
        loop = asyncio.get_running_loop()
        try:
            await loop.sock_sendall(sock, payload)
        except OSError as exc:  # mp_rpc.lua:184-186 keeps it alive; a socket that failed a send is dead anyway
            raise RPCError(_connect_error(exc)) from None
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, unicode_errors=LUA_BYTES)  # one per call
        fed = done = 0  # bytes received / bytes of complete objects
        while True:
            for data in unpacker:
                done = unpacker.tell()
                if type(data) is list and data and data[0] == 2:  # notification: [2, label, args]
                    if self.on_notification is not None:
                        self.on_notification(data[1], data[2])
                    continue
                return _response(data, msg_id)
            chunk = await _recv(loop, sock)
            if not chunk:
                if fed != done:  # closed in the middle of an object
                    raise RPCLuaError("missing bytes")
                raise RPCError("no data")
            unpacker.feed(chunk)
            fed += len(chunk)


async def _recv(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bytes:
    try:
        return await loop.sock_recv(sock, _RECV_SIZE)
    except OSError:
        return b""  # reset by peer: Kong's reader sees no data as well


def _response(data: Any, msg_id: int) -> Any:
    """Kong's asserts on ``[1, msgid, err, result]``, then ``nil, err`` or the result."""
    if not isinstance(data, list) or len(data) < 2 or data[0] != 1:
        raise RPCLuaError("RPC response expected from Go plugin server")
    if data[1] != msg_id:
        raise RPCLuaError("unexpected RPC response ID from Go plugin server")
    err = data[2] if len(data) > 2 else None
    if err is not None:
        raise RPCError(err if isinstance(err, str) else str(err))
    return data[3] if len(data) > 3 else None
