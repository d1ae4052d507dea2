"""`make run`'s terminal request log: one short line per request from file-log's JSON records.

file-log writes the full, redacted record (Kong's serialize() plus sv-edge's `request_id` and `user_id`) to
run/access.log; `follow` prints `method path status latency request_id` for each record as it arrives.
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


def follow(path: Path, alive: Callable[[], bool], out: TextIO = sys.stdout, poll: float = 0.2) -> None:
    """Print the short form of every line appended to `path` while `alive()`; partial lines wait for their end."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        pending = ""
        while alive():
            chunk = fh.readline()
            if not chunk:
                time.sleep(poll)
                continue
            pending += chunk
            if not pending.endswith("\n"):
                continue
            text, pending = brief_line(pending), ""
            if text is not None:
                print(text, file=out, flush=True)
