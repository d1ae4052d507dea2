"""`make run`'s terminal request log: one short line per request from file-log's JSON records.

file-log writes the full, redacted record (Kong's serialize() plus sv-edge's `request_id` and `user_id`) to
run/access.log; `follow` prints `method path status latency request_id` for each record as it arrives, and the
warnings and errors of run/emulator.log (the rest of every process's output stays in its file under run/).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO


def brief(record: dict[str, Any]) -> str:
    """`GET /api/v1/stories 200 12ms 5f0c...`: the path without its query string (which may carry secrets)."""
    request, response = record.get("request") or {}, record.get("response") or {}
    path = str(request.get("uri") or "?").split("?", 1)[0]
    latency = (record.get("latencies") or {}).get("request")
    request_id = record.get("request_id") or request.get("id") or "-"
    took = f"{latency}ms" if isinstance(latency, int | float) else "-"
    return f"{request.get('method', '?')} {path} {response.get('status', '?')} {took} {request_id}"


def brief_line(line: str) -> str | None:
    """The short form of one log line; None for a blank line, the line itself when it is not a JSON record."""
    line = line.strip()
    if not line:
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return line
    return brief(record) if isinstance(record, dict) else line


PROBLEM_MARKS = ("[WARNING]", "[ERROR]", "[CRITICAL]", "[ALERT]", "[EMERG]", '"level": "warning"', '"level": "error"')


def problem_line(line: str) -> str | None:
    """An emulator log line worth the terminal: its warnings and errors, and plugin servers' (relayed as info)."""
    line = line.rstrip("\n")
    return line if any(mark in line for mark in PROBLEM_MARKS) else None


def follow(
    sources: dict[Path, Callable[[str], str | None]], alive: Callable[[], bool], out: TextIO = sys.stdout, poll=0.2
) -> None:
    """While `alive()`, print what each source's function makes of every line appended to its file (None: nothing);
    a partial line waits for its end."""
    handles = {path: open(path, encoding="utf-8", errors="replace") for path in sources}
    pending = dict.fromkeys(sources, "")
    try:
        while alive():
            idle = True
            for path, fh in handles.items():
                chunk = fh.readline()
                if not chunk:
                    continue
                idle, pending[path] = False, pending[path] + chunk
                if pending[path].endswith("\n"):
                    text, pending[path] = sources[path](pending[path]), ""
                    if text is not None:
                        print(text, file=out, flush=True)
            if idle:
                time.sleep(poll)
    finally:
        for fh in handles.values():
            fh.close()
