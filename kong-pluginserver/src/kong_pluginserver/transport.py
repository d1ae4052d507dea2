"""The hub's I/O: the Unix socket, MessagePack framing of requests and replies, and the server's lifecycle
(serve, budgets and watchdog ticks, SIGTERM drain). Callbacks run on gevent's hub; RPCs go to `PluginServer`.
See ``kong_pluginserver.server``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import socket
import time
import traceback
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event
import msgpack
from gevent import monkey

from kong_pluginserver.model import DEFERRED, ServerError
from kong_pluginserver.pdk import PDKException

if TYPE_CHECKING:
    from kong_pluginserver.model import Event
    from kong_pluginserver.server import PluginServer

log = logging.getLogger("kong_pluginserver")

BYTES = "surrogateescape"  # how non-UTF-8 bytes in msgpack str values reach the plugin (and go back to Kong)
UNPACK_READ_SIZE = 16 * 1024  # a connection's unpacker starts this small (kong-pdk: 1 MiB) and grows on demand
UNPACK_MAX = 64 * 1024 * 1024  # one message (a raw body) may not exceed this
_RECV = 65536


class Conn:
    __slots__ = ("closed", "fd", "out", "pending", "reader", "sock", "unpacker", "writer")

    def __init__(self, sock: Any, loop: Any) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.unpacker = msgpack.Unpacker(
            raw=False,
            unicode_errors=BYTES,
            strict_map_key=False,
            read_size=UNPACK_READ_SIZE,
            max_buffer_size=UNPACK_MAX,
        )
        self.out = b""
        self.pending: Event | None = None  # the event whose output answers this connection's in-flight request
        self.closed = False
        self.reader = loop.io(self.fd, 1)
        self.writer: Any = None


class UnixServer:
    """Listen on ``path`` and serve `PluginServer` RPCs from gevent's hub (callbacks on the hub greenlet; plugin
    code in event greenlets)."""

    def __init__(self, ps: PluginServer, path: str, listen_queue_size: int = 4096, drain_s: float = 10.0) -> None:
        self.ps = ps
        ps.answer = self.answer
        self.path = path
        self.listen_queue_size = listen_queue_size
        self.drain_s = drain_s
        self.conns: dict[int, Conn] = {}
        self._packer = msgpack.Packer(unicode_errors=BYTES)  # kong-pdk: msgpack.packb defaults (use_bin_type=True)
        self._stop = False
        self._stopping_since: float | None = None
        self._buf = bytearray(_RECV)
        self._view = memoryview(self._buf)
        self._done = None
        self._parent = os.getppid()
        self._next_check = 0.0

    def listen(self) -> Any:
        if os.path.exists(self.path):
            os.remove(self.path)
        lsock = _socket_class()(socket.AF_UNIX, socket.SOCK_STREAM)
        lsock.bind(self.path)
        lsock.listen(self.listen_queue_size)
        lsock.setblocking(False)
        return lsock

    def serve_forever(self, lsock: Any = None) -> None:
        lsock = lsock or self.listen()
        hub = gevent.get_hub()
        self.ps.hub = hub
        loop = hub.loop
        self._done = gevent.event.Event()
        accept = loop.io(lsock.fileno(), 1)
        accept.start(self._guard, self._accept, lsock)
        ticker = loop.timer(_TICK_S, _TICK_S)
        ticker.start(self._guard, self._tick)
        self._next_check = time.monotonic() + _WATCHDOG_S
        try:
            self._done.wait()
        finally:
            accept.close()
            ticker.close()
            for conn in list(self.conns.values()):
                self._close(conn)
            lsock.close()
            with contextlib.suppress(OSError):
                os.remove(self.path)

    def stop(self) -> None:
        """Graceful stop (SIGTERM): keep serving until no event is in flight, at most ``drain_s``."""
        if not self._stop:
            self._stop = True
            self._stopping_since = time.monotonic()
            log.info("stop requested: draining %d in-flight event(s)", len(self.ps.events))

    def _guard(self, fn: Any, *args: Any) -> None:
        """Hub callbacks must never raise (the hub would report and carry on, but state would be half-done)."""
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - log and keep serving
            log.error("server loop: %s", traceback.format_exc())

    def _tick(self) -> None:
        ps = self.ps
        now = time.monotonic()
        if ps.waiting_io:
            for conn, msgid, err in ps.tick(now):
                self.answer(conn, (msgid, err, None))
        if now >= self._next_check:
            self._next_check = now + _WATCHDOG_S
            ps.sweep(now)
            if os.getppid() != self._parent:  # Kong (our parent) died: we were re-parented
                log.info("Kong exits, terminating...")
                self._done.set()
        if self._stop:
            if not ps.events:
                log.info("stopped: every in-flight event has ended")
                self._done.set()
            elif now - self._stopping_since >= self.drain_s:
                log.warning("stopping with %d event(s) still in flight after %.0f s", len(ps.events), self.drain_s)
                self._done.set()

    def _accept(self, lsock: Any) -> None:
        loop = self.ps.hub.loop
        while True:
            try:
                sock, _ = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE etc.: try again on the next wake-up
                log.warning("accept: %s", exc)
                return
            sock.setblocking(False)
            conn = Conn(sock, loop)
            self.conns[conn.fd] = conn
            conn.reader.start(self._guard, self._read, conn)

    def _close(self, conn: Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        self.conns.pop(conn.fd, None)
        conn.reader.close()
        if conn.writer is not None:
            conn.writer.close()
        conn.sock.close()
        conn.unpacker = None
        if conn.pending is not None:  # Kong closed the socket mid-event: nobody will read the answer
            self.ps.abandon(conn.pending, "Kong closed the connection")

    def _read(self, conn: Conn) -> None:
        try:
            n = conn.sock.recv_into(self._buf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            n = 0
        if not n:
            self._close(conn)
            return
        conn.unpacker.feed(self._view[:n])
        ps = self.ps
        try:
            for msg in conn.unpacker:
                if type(msg) is not list or len(msg) != 4:
                    raise ValueError("not a request")  # kong-pdk: the unpacking raises, the connection dies
                _, msgid, method, args = msg
                fn = ps.method(method)
                if fn is None:
                    raise ValueError(f"bad method {method!r}")
                if conn.pending is not None:
                    # A new request while one is unanswered: Kong timed out on this connection and reused it
                    # (mp_rpc.lua setkeepalive() after "no data"). The old answer must never arrive late.
                    ps.abandon(conn.pending, "Kong sent a new request on the connection")
                ps.rpc_count += 1
                self._call(conn, fn, msgid, args)
                if conn.closed:
                    break
        except (ValueError, msgpack.UnpackException) as exc:
            log.warning("connection dropped: %s", exc)
            self._close(conn)
        if ps.resume:
            ps.finish_terminated()

    def _call(self, conn: Conn, fn: Any, msgid: Any, args: Any) -> None:
        if isinstance(fn, ServerError):
            self.answer(conn, (msgid, str(fn), None))
            return
        try:
            if fn.__name__ in _DEFERRABLE:
                ret = fn(*args, conn, msgid)
                if ret is DEFERRED:
                    return
                self.answer(conn, ret)
                return
            ret = fn(*args)
        except (ServerError, PDKException) as exc:
            log.warning("rpc: #%s error: %s", msgid, exc)
            self.answer(conn, (msgid, str(exc), None))
            return
        except Exception as exc:  # noqa: BLE001 - kong-pdk answers str(exc) for anything else too
            log.error("rpc: #%s exception: %s", msgid, traceback.format_exc())
            self.answer(conn, (msgid, str(exc), None))
            return
        self.answer(conn, (msgid, None, ret))

    def answer(self, conn: Conn, reply: tuple) -> None:
        if conn.closed:
            return
        msgid, err, ret = reply
        try:
            payload = self._packer.pack([1, msgid, err, ret])
        except Exception as exc:  # noqa: BLE001 - a value msgpack cannot carry: an error answer, never a dead loop
            log.error("rpc: #%s: reply not packable: %s", msgid, exc)
            payload = self._packer.pack([1, msgid, f"reply not packable: {type(exc).__name__}", None])
        if conn.out:
            conn.out += payload
            return
        try:
            sent = conn.sock.send(payload)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.ECONNRESET):
                log.warning("send: %s", exc)
            self._close(conn)
            return
        if sent < len(payload):
            conn.out = payload[sent:]
            if conn.writer is None:
                conn.writer = self.ps.hub.loop.io(conn.fd, 2)
            conn.writer.start(self._guard, self._flush, conn)

    def _flush(self, conn: Conn) -> None:
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        conn.out = conn.out[sent:]
        if not conn.out:
            conn.writer.stop()


_DEFERRABLE = frozenset(("start_instance", "handle_event", "step", "step_error"))
_TICK_S = 0.05
_WATCHDOG_S = 1.0


def _socket_class() -> type:
    """The unpatched socket class: the hub's own I/O is non-blocking and driven by its watchers."""
    return monkey.get_original("socket", "socket")


def install_sigterm(server: UnixServer) -> None:
    """SIGTERM (Kong stopping, the emulator, Kubernetes) drains; a second SIGTERM stops at once."""

    def on_term(signum: int, _frame: Any) -> None:
        if server._stop:
            os._exit(0)
        server.stop()

    signal.signal(signal.SIGTERM, on_term)
