#!/usr/bin/env python3
"""A byte-safe MessagePack-RPC plugin server for the emulator's conformance tests (no kong-pdk).

kong-pdk decodes every msgpack str as UTF-8 and cannot take the raw bytes Kong sends; this peer never decodes.
It serves one plugin, `t-raw`, whose config names what to do per phase:

  {"access": [["kong.request.get_header", ["x-a"]], ...], "log": [...], "out": "/path/record.jsonl"}

Each event calls the listed PDK methods in order and appends, for each, one JSON line to `out`:
``{"phase": ..., "method": ..., "step": "<hex of the whole Step request as received>"}``; the test decodes the hex
itself, so it sees the msgpack types (str or bin) and the bytes exactly as the emulator sent them. A step
``["!hang", seconds]`` first sleeps before answering HandleEvent (a hung plugin server).

    python t_raw.py --dump           the plugin info (what Kong's query command reads)
    python t_raw.py -p PREFIX        serve on PREFIX/t-raw.sock
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import msgpack

NAME = "t-raw"
INFO = {
    "Name": NAME,
    "Version": "0.1.0",
    "Priority": 900,
    "Phases": ["access", "log"],
    "Schema": {
        "name": NAME,
        "fields": [
            {
                "config": {
                    "type": "record",
                    "fields": [
                        {"access": {"type": "string"}},
                        {"log": {"type": "string"}},
                        {"out": {"type": "string"}},
                    ],
                }
            }
        ],
    },
}


class Server:
    def __init__(self) -> None:
        self.instances: dict[int, dict] = {}
        self.events: dict[int, tuple[str, list, str]] = {}  # event id -> (phase, remaining calls, out path)
        self.next_id = 0

    def start_instance(self, params: dict) -> dict:
        config = json.loads(params[b"Config"])
        self.next_id += 1
        self.instances[self.next_id] = config
        return {"Id": self.next_id, "Name": NAME, "Config": params[b"Config"]}

    async def handle_event(self, params: dict) -> dict:
        config = self.instances.get(params[b"InstanceId"])
        if config is None:
            raise LookupError(f"no plugin instance {params[b'InstanceId']}")
        phase = params[b"EventName"].decode()
        calls = json.loads(config.get(phase) or "[]")
        while calls and calls[0][0] == "!hang":
            await asyncio.sleep(calls.pop(0)[1])
        self.next_id += 1
        self.events[self.next_id] = (phase, calls, config.get("out") or os.devnull)
        return self.next_step(self.next_id, None)

    def next_step(self, event_id: int, received: bytes | None) -> dict:
        phase, calls, out = self.events[event_id]
        if received is not None:
            method = calls.pop(0)[0]
            with open(out, "a") as fh:
                fh.write(json.dumps({"phase": phase, "method": method, "step": received.hex()}) + "\n")
        if not calls:
            del self.events[event_id]
            return {"EventId": event_id, "Data": "ret"}
        method, args = calls[0]
        return {"EventId": event_id, "Data": {"Method": method, "Args": args}}

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        unpacker = msgpack.Unpacker(raw=True, strict_map_key=False)
        packer = msgpack.Packer(use_bin_type=False)
        received = b""  # everything read on this connection: tell() offsets index into it
        start = 0
        while chunk := await reader.read(65536):
            received += chunk
            unpacker.feed(chunk)
            for request in unpacker:
                end = unpacker.tell()
                _, msgid, method, params = request
                try:
                    result = await self.dispatch(method.decode(), params, received[start:end])
                    reply = [1, msgid, None, result]
                except LookupError as exc:
                    reply = [1, msgid, str(exc), None]
                writer.write(packer.pack(reply))
                await writer.drain()
                start = end
        writer.close()

    async def dispatch(self, method: str, params: list, raw: bytes) -> object:
        if method == "plugin.StartInstance":
            return self.start_instance(params[0])
        if method == "plugin.HandleEvent":
            return await self.handle_event(params[0])
        if method == "plugin.CloseInstance":
            self.instances.pop(params[0], None)
            return None
        if method.startswith("plugin.Step"):
            step = params[0]
            return self.next_step(step[b"EventId"], raw)
        raise LookupError(f"unknown method {method}")


async def main(prefix: str) -> None:
    path = os.path.join(prefix, NAME + ".sock")
    if os.path.exists(path):
        os.unlink(path)
    server = await asyncio.start_unix_server(Server().serve, path)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if "--dump" in sys.argv:
        print(json.dumps([INFO]))
    else:
        asyncio.run(main(sys.argv[sys.argv.index("-p") + 1]))
