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
import math
import socket
from collections import deque
from collections.abc import Callable
from typing import Any

import msgpack

KONG_READ_TIMEOUT = 60.0  # nginx's default lua_socket_read_timeout; Kong's templates never change it
KONG_POOL_SIZE = 256  # lua_socket_pool_size
IDLE_PEEK_AFTER = 0.001  # seconds idle after which acquire also peeks at a pooled connection
CLOCK_SLACK = 0.001  # libuv's timers count whole milliseconds

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


class Connection(asyncio.Protocol):
    """One Unix-socket connection (an OpenResty cosocket), read through asyncio's transport: it stays registered
    with the event loop, so a call costs one send and the reads, not a registration per read.

    Idle in the pool, any data or EOF closes it -- nginx's keepalive close handler does the same for a pooled
    connection the peer wrote to or closed (a late reply to a call that timed out, a restarted server).
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.idle = False
        self.closed = False
        self.released_at = 0.0  # loop time it went back to the pool
        self.sock: socket.socket | None = None
        self.timeouts: ReadTimeouts | None = None  # the pool's; None: one loop timer per read
        self._chunks: deque[bytes] = deque()
        self._waiter: asyncio.Future | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        if self.idle:
            self.close()
            return
        waiter = self._waiter
        if waiter is not None and not self._chunks and not waiter.done():
            waiter.set_result(data)  # straight to the reader waiting for it
            return
        self._chunks.append(data)
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False

    def connection_lost(self, exc) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def send(self, payload: bytes) -> None:
        if self.closed or self.transport is None or self.transport.is_closing():
            raise RPCError("closed")
        self.transport.write(payload)

    def wait(self, deadline: float) -> asyncio.Future | None:
        """`recv`'s wait without a coroutine: a future for the next bytes (None: EOF or close) with the read
        timeout at ``deadline``, or None when bytes or EOF are already there; `waited` when it is done."""
        if self._chunks or self.closed or self.timeouts is None:
            return None
        waiter = self._waiter = self.loop.create_future()
        self.timeouts.add(waiter, deadline)
        return waiter

    def waited(self, waiter: asyncio.Future) -> None:
        self._waiter = None
        self.timeouts.discard(waiter)

    async def recv(self, deadline: float) -> bytes:
        """The next bytes received, b"" once the peer closed (Kong's reader then sees no data); `TimeoutError` at
        `deadline` (loop time), like the cosocket's read timeout."""
        while not self._chunks:
            if self.closed:
                return b""
            loop = self.loop
            waiter = self._waiter = loop.create_future()
            timeouts = self.timeouts
            if timeouts is not None:
                timeouts.add(waiter, deadline)
            else:
                timer = loop.call_at(deadline, _expire, waiter)
            try:
                data = await waiter  # the bytes (data_received), or None (EOF, close)
            finally:
                self._waiter = None
                if timeouts is not None:
                    timeouts.discard(waiter)
                else:
                    timer.cancel()
            if data is not None:
                return data
        return self._chunks.popleft()

    def peer_gone(self) -> bool:
        """True if the peer closed or wrote while idle, whether or not the loop has delivered that event yet."""
        if self.sock is None:
            return True
        try:
            self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            return True  # EOF (b"") or bytes nobody asked for
        except BlockingIOError:
            return False
        except OSError:
            return True

    def discard(self) -> None:
        """Forget what was read and not used (Kong drops its unpacker with the bytes it had buffered)."""
        self._chunks.clear()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        self._wake()


def _expire(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class ReadTimeouts:
    """The read deadlines of one loop's waiting reads, served by a single loop timer set to the earliest of them
    (a timer per read would be armed and cancelled ~10 times per request). A read ends with `TimeoutError` once
    the loop's clock reaches its deadline, as with a timer of its own."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._waiting: dict[asyncio.Future, float] = {}  # waiter → deadline (loop time)
        self._timer: asyncio.TimerHandle | None = None
        self._at = math.inf  # when the timer fires

    def add(self, waiter: asyncio.Future, deadline: float) -> None:
        self._waiting[waiter] = deadline
        if deadline < self._at:
            self._arm(deadline)

    def discard(self, waiter: asyncio.Future) -> None:
        self._waiting.pop(waiter, None)  # the timer stays: when it fires it re-arms for what is left

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._at = when
        self._timer = self.loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer, self._at = None, math.inf
        now = self.loop.time() + CLOCK_SLACK  # a loop timer may fire up to a tick before its time
        for waiter in [w for w, d in self._waiting.items() if d <= now]:
            del self._waiting[waiter]
            _expire(waiter)
        if self._waiting:
            self._arm(min(self._waiting.values()))


class SocketPool:
    """Idle keepalive connections to one Unix socket, for one simulated worker (OpenResty's cosocket pool, LIFO).

    ``fresh_every=N`` makes every N-th acquire open a new connection even when an idle one exists (Kong does
    this whenever the pool is empty, e.g. under concurrency); 0 disables it.
    """

    def __init__(self, path: str, size: int = KONG_POOL_SIZE, fresh_every: int = 0) -> None:
        self.path = path
        self.size = size
        self.fresh_every = fresh_every
        self._idle: deque[Connection] = deque()
        self._acquired = 0
        self._timeouts: ReadTimeouts | None = None
        self.opened = 0  # connections opened so far (for tests and stats)

    async def acquire(self) -> Connection:
        """An idle live connection, or a new one (``ngx.socket.connect``); raises `RPCError` on failure."""
        conn = self.take()
        return conn if conn is not None else await self.open()

    def take(self) -> Connection | None:
        """``acquire`` without the connect: an idle live connection, or None (then `open` one)."""
        self._acquired += 1
        if self.fresh_every and self._acquired % self.fresh_every == 0:
            return None
        idle = self._idle
        while idle:
            conn = idle.pop()
            # nginx closes an idle connection as soon as its event loop sees the peer's EOF or data; a connection
            # reused within a millisecond is checked by that event alone, an older one also by a peek, in case
            # the close happened while this coroutine kept the loop busy
            if not conn.closed and (conn.loop.time() - conn.released_at < IDLE_PEEK_AFTER or not conn.peer_gone()):
                conn.idle = False
                return conn
            conn.close()
        return None

    async def open(self) -> Connection:
        """A new connection (``ngx.socket.connect``); raises `RPCError` on failure."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, self.path)
            _, conn = await loop.create_unix_connection(Connection, sock=sock)
        except OSError as exc:
            sock.close()
            raise RPCError(_connect_error(exc)) from None
        conn.sock = sock
        if self._timeouts is None or self._timeouts.loop is not loop:
            self._timeouts = ReadTimeouts(loop)
        conn.timeouts = self._timeouts
        self.opened += 1
        return conn

    def release(self, conn: Connection) -> None:
        """``c:setkeepalive()``: back to the pool, or closed when the pool is full (or the connection is dead)."""
        conn.discard()
        if not conn.closed and len(self._idle) < self.size:
            conn.idle = True
            conn.released_at = conn.loop.time()
            self._idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        """Close every idle connection."""
        while self._idle:
            self._idle.pop().close()

    @property
    def idle(self) -> int:
        return sum(1 for c in self._idle if not c.closed)


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
        pool = self.pool
        conn = pool.take()
        if conn is None:
            conn = await pool.open()
        deadline = conn.loop.time() + self.timeout
        try:
            conn.send(pack_request(msg_id, method, params))
            waiter = conn.wait(deadline)  # the usual case: nothing received yet (else `recv` below)
            chunk = None
            if waiter is not None:
                try:
                    chunk = await waiter
                finally:
                    conn.waited(waiter)
            if chunk is None:
                chunk = await conn.recv(deadline)
            try:  # the usual reply: one whole object in one read (anything else: the reader below decides)
                data = _unpackb(chunk)
            except (ValueError, TypeError, msgpack.UnpackException):  # part of an object, or more than one
                data = None
            if type(data) is list and len(data) == 4 and data[0] == 1 and data[1] == msg_id and data[2] is None:
                result = data[3]  # _response's answer for a plain success
            elif type(data) is list and data and data[0] != 2:
                result = _response(data, msg_id)
            else:
                result = await self._read(conn, msg_id, chunk, deadline)
        except TimeoutError:
            # mp_rpc.lua:195-198: the reader fails and Kong calls c:setkeepalive() -- the connection goes back to
            # the pool while the server still owes this reply; the next call on it may read that reply instead
            pool.release(conn)
            raise RPCTimeout() from None
        except BaseException:
            conn.close()
            raise
        pool.release(conn)
        return result

    async def _read(self, conn: Connection, msg_id: int, chunk: bytes, deadline: float) -> Any:
        """Kong's ``mp_unpacker`` reader from the first bytes on: notifications, then the response."""
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, unicode_errors=LUA_BYTES)  # one per call
        fed = done = 0  # bytes received / bytes of complete objects
        while True:
            if not chunk:
                if fed != done:  # closed in the middle of an object
                    raise RPCLuaError("missing bytes")
                raise RPCError("no data")
            unpacker.feed(chunk)
            fed += len(chunk)
            for data in unpacker:
                done = unpacker.tell()
                if type(data) is list and data and data[0] == 2:  # notification: [2, label, args]
                    if self.on_notification is not None:
                        self.on_notification(data[1], data[2])
                    continue
                return _response(data, msg_id)
            chunk = await conn.recv(deadline)


def _unpackb(chunk: bytes) -> Any:
    return msgpack.unpackb(chunk, raw=False, strict_map_key=False, unicode_errors=LUA_BYTES)


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
