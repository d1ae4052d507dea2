"""A Kong-side test driver written from Kong 3.9.1's source: what one nginx worker does to a MessagePack plugin
server. It is independent of the emulator (kong-emulator/) on purpose: it sends bytes exactly as Kong does.

* `Worker.call` is ``Rpc:call`` (kong/runloop/plugin_servers/rpc/mp_rpc.lua:172-221): a pooled Unix connection per
  call (``setkeepalive``), ``mp_pack({0, msg_id, method, {...}})`` with a per-worker msg_id, then read MessagePack
  objects until ``[1, msg_id, err, result]``.
* Encoding (lua-MessagePack 0.5.4 with mp_rpc.lua:1-40): every Lua string is a msgpack **str** whatever its bytes
  (no UTF-8 check), so this driver takes `bytes` for Lua strings and packs them as str; ``fix_raw`` results
  (mp_rpc.lua:69-75, the raw body) go as **bin**; ``fix_mmap`` (mp_rpc.lua:46-66) turns a header/query table into
  lists, ``true`` into ``[]`` and an empty table into an empty map; nil is left out of Step (``Data`` absent).
* `Worker.handle_event` is ``bridge_loop`` + ``Rpc:handle_event`` (mp_rpc.lua:264-318): HandleEvent, then one PDK
  call and one ``get_step_method`` Step (mp_rpc.lua:158-168) at a time until ``"ret"``; a terminal
  ``kong.response.exit/error`` ends it (Kong never answers it); "no plugin instance" resets this worker's
  instances and retries (plugin.lua:201-222).
* `Worker.instance_id` is ``get_instance_id`` (plugin.lua:237-300): one instance per plugin id and ``__seq__`` per
  worker, a new one started with ``{Name, Config = cjson.encode(conf)}`` and the old one closed.

`Request` plays Kong's PDK for one request: headers, query, raw body, ``kong.ctx.shared``, ``kong.log.serialize()``
(cjson: raw bytes are copied, not escaped) and records exit / set_header calls.
"""

from __future__ import annotations

import json
import socket
import struct
from dataclasses import dataclass, field
from typing import Any

import msgpack

STEP_BY_METHOD = {  # mp_rpc.lua get_step_method's by_pdk_method
    "kong.client.get_credential": "plugin.StepCredential",
    "kong.client.load_consumer": "plugin.StepConsumer",
    "kong.client.get_consumer": "plugin.StepConsumer",
    "kong.client.authenticate": "plugin.StepCredential",
    "kong.node.get_memory_stats": "plugin.StepMemoryStats",
    "kong.router.get_route": "plugin.StepRoute",
    "kong.router.get_service": "plugin.StepService",
    "kong.request.get_query": "plugin.StepMultiMap",
    "kong.request.get_headers": "plugin.StepMultiMap",
    "kong.response.get_headers": "plugin.StepMultiMap",
    "kong.service.response.get_headers": "plugin.StepMultiMap",
}
TERMINAL = ("kong.response.exit", "kong.response.error")


class Bin(bytes):
    """A Lua string that mp_rpc.lua's fix_raw sends as msgpack bin."""


def lua_pack(obj: Any) -> bytes:
    """lua-MessagePack's packers for the values Kong sends: bytes/str → str (raw bytes), Bin → bin."""
    if obj is None:
        return b"\xc0"
    if obj is True:
        return b"\xc3"
    if obj is False:
        return b"\xc2"
    if isinstance(obj, int):
        return msgpack.packb(obj)
    if isinstance(obj, float):
        return b"\xcb" + struct.pack(">d", obj)
    if isinstance(obj, Bin):
        return msgpack.packb(bytes(obj), use_bin_type=True)
    if isinstance(obj, str):
        obj = obj.encode()
    if isinstance(obj, bytes):
        n = len(obj)
        if n < 32:
            head = bytes([0xA0 | n])
        elif n < 1 << 16:
            head = b"\xda" + struct.pack(">H", n)  # string_compat: no str8
        else:
            head = b"\xdb" + struct.pack(">I", n)
        return head + obj
    if isinstance(obj, list | tuple):
        n = len(obj)
        head = bytes([0x90 | n]) if n < 16 else b"\xdc" + struct.pack(">H", n)
        return head + b"".join(lua_pack(v) for v in obj)
    if isinstance(obj, dict):
        n = len(obj)
        head = bytes([0x80 | n]) if n < 16 else b"\xde" + struct.pack(">H", n)
        return head + b"".join(lua_pack(k) + lua_pack(v) for k, v in obj.items())
    raise TypeError(f"Kong cannot send {type(obj).__name__}")


def cjson_encode(obj: Any) -> bytes:
    """cjson.encode as Kong uses it: strings are copied byte for byte (only '"', '\\', '/' and controls escaped)."""
    if isinstance(obj, bytes | str):
        raw = obj.encode() if isinstance(obj, str) else obj
        out = bytearray(b'"')
        for b in raw:
            if b in (0x22, 0x5C, 0x2F):
                out += b"\\" + bytes([b])
            elif b < 0x20:
                out += b"\\u%04x" % b
            else:
                out.append(b)
        return bytes(out + b'"')
    if obj is None:
        return b"null"
    if isinstance(obj, bool):
        return b"true" if obj else b"false"
    if isinstance(obj, int | float):
        return str(obj).encode()
    if isinstance(obj, list):
        return b"[" + b",".join(cjson_encode(v) for v in obj) + b"]"
    if isinstance(obj, dict):
        return b"{" + b",".join(cjson_encode(k) + b":" + cjson_encode(v) for k, v in obj.items()) + b"}"
    raise TypeError(type(obj).__name__)


def fix_mmap(table: dict) -> dict:
    return {k: ([] if v is True else [v] if isinstance(v, bytes | str) else v) for k, v in table.items()}


class RPCError(Exception):
    pass


@dataclass
class Request:
    """Kong's side of one request as the PDK exposes it (values are Lua strings: bytes)."""

    headers: dict = field(default_factory=dict)
    query: dict = field(default_factory=dict)
    body: bytes = b""
    method: bytes = b"GET"
    path: bytes = b"/"
    ip: bytes = b"10.0.0.7"
    shared: dict = field(default_factory=dict)
    status: int = 200
    exit: tuple | None = None
    calls: list = field(default_factory=list)
    upstream_headers: dict = field(default_factory=dict)

    def serialize(self) -> dict:
        return {
            "request": {"method": self.method, "uri": self.path, "headers": self.headers, "querystring": self.query,
                        "id": self.headers.get(b"x-request-id", b"")},
            "response": {"status": self.status},
            "client_ip": self.ip,
        }  # fmt: skip

    def pdk(self, method: str, args: list) -> Any:
        self.calls.append((method, args))
        name = method
        if name == "kong.request.get_headers":
            return fix_mmap({k.lower(): v for k, v in self.headers.items()})
        if name == "kong.request.get_header":
            return self.headers.get(_b(args[0]).lower())
        if name == "kong.request.get_query":
            return fix_mmap(self.query)
        if name == "kong.request.get_query_arg":
            return self.query.get(_b(args[0]))
        if name == "kong.request.get_raw_body":
            return Bin(self.body)
        if name == "kong.request.get_method":
            return self.method
        if name == "kong.request.get_path":
            return self.path
        if name in ("kong.client.get_forwarded_ip", "kong.client.get_ip"):
            return self.ip
        if name == "kong.ctx.shared.get":
            return self.shared.get(args[0])
        if name == "kong.ctx.shared.set":
            self.shared[args[0]] = args[1] if len(args) > 1 else None
            return None
        if name == "kong.log.serialize":
            return cjson_encode(self.serialize())  # plugin.lua:47-50: a JSON string, raw bytes inside
        if name in ("kong.service.request.set_header", "kong.response.set_header"):
            self.upstream_headers[args[0]] = args[1]
            return None
        if name in TERMINAL:
            self.exit = tuple(args)
            return None
        return None  # set_headers, log.*, anything else: nil


def _b(value: Any) -> bytes:
    return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value


class Worker:
    """One nginx worker: its msg_id, its keepalive pool and its running_instances table."""

    def __init__(self, path: str, plugin: str, timeout: float = 10.0) -> None:
        self.path = path
        self.plugin = plugin
        self.timeout = timeout
        self.msg_id = 0
        self.pool: list[socket.socket] = []
        self.instances: dict[str, tuple[int, int]] = {}  # plugin id -> (instance id, seq)
        self.log: list[tuple[str, str]] = []

    def close(self) -> None:
        for s in self.pool:
            s.close()
        self.pool.clear()

    def call(self, method: str, *params: Any) -> Any:
        self.msg_id += 1
        msg_id = self.msg_id
        sock = None
        while self.pool and sock is None:  # nginx drops a pooled connection as soon as its peer closes it
            sock = self.pool.pop()
            if not _alive(sock):
                sock.close()
                sock = None
        if sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.path)
            except OSError as exc:
                sock.close()
                raise RPCError(f"trying to connect: {exc}") from None
        try:
            sock.sendall(lua_pack([0, msg_id, method, list(params)]))
            unpacker = msgpack.Unpacker(raw=True, strict_map_key=False)
            while True:
                data = sock.recv(4096)  # c:receiveany(4096)
                if not data:
                    raise OSError("closed")
                unpacker.feed(data)
                for msg in unpacker:
                    assert msg[0] == 1, "RPC response expected from Go plugin server"
                    assert msg[1] == msg_id, "unexpected RPC response ID from Go plugin server"
                    self.pool.append(sock)  # c:setkeepalive()
                    if msg[2] is not None:
                        raise RPCError(msg[2].decode("utf-8", "replace"))
                    return _text_keys(msg[3])
        except OSError:
            sock.close()
            raise RPCError("no data") from None

    def instance_id(self, plugin_id: str, conf: dict, seq: int = 1) -> int:
        info = self.instances.get(plugin_id)
        if info and info[1] == seq:
            return info[0]
        conf = {**conf, "__plugin_id": plugin_id, "__seq__": seq}
        started = self.call("plugin.StartInstance", {"Name": self.plugin, "Config": cjson_encode(conf)})
        self.instances[plugin_id] = (started["Id"], seq)
        if info:
            try:
                self.call("plugin.CloseInstance", info[0])
            except RPCError:
                pass
        return started["Id"]

    def handle_event(self, plugin_id: str, conf: dict, phase: str, req: Request, _retry: bool = True) -> None:
        """Rpc:handle_event: errors are logged (``self.log``) and the request goes on, as in Kong."""
        try:
            iid = self.instance_id(plugin_id, conf)
            step = self.call("plugin.HandleEvent", {"InstanceId": iid, "EventName": phase})
            eid = step["EventId"]
            while step["Data"] != b"ret":
                method = step["Data"]["Method"].decode()
                if method in TERMINAL:
                    req.pdk(method, step["Data"]["Args"])
                    return  # Kong never sends another Step after exit
                res = req.pdk(method, step["Data"]["Args"])
                params = {"EventId": eid} if res is None else {"EventId": eid, "Data": res}
                step = self.call(STEP_BY_METHOD.get(method, "plugin.Step"), params)
        except RPCError as exc:
            if "no plugin instance" in str(exc).lower() and _retry:
                self.log.append(("warn", str(exc)))
                self.instances.clear()  # reset_instances_for_plugin
                return self.handle_event(plugin_id, conf, phase, req, _retry=False)
            self.log.append(("err", str(exc)))


def _alive(sock: socket.socket) -> bool:
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.settimeout(timeout)


def _text_keys(obj: Any) -> Any:
    """Map keys as text (Kong reads them as Lua strings too); values stay bytes where Kong has bytes."""
    if isinstance(obj, dict):
        return {(k.decode("utf-8", "surrogateescape") if isinstance(k, bytes) else k): _text_keys(v)
                for k, v in obj.items()}  # fmt: skip
    if isinstance(obj, list):
        return [_text_keys(v) for v in obj]
    return obj


def config(**fields: Any) -> dict:
    """A plugin config as Kong's cjson would send it (JSON-able Python values)."""
    return json.loads(json.dumps(fields))
