"""`make run`'s terminal request log (scripts/request_lines.py): one short line per file-log JSON record."""

from __future__ import annotations

import io
import json
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from request_lines import brief, brief_line, follow, problem_line  # noqa: E402

RECORD = {
    "request": {"method": "POST", "uri": "/api/v1/auth/login?code=secret", "id": "kong-id"},
    "response": {"status": 401},
    "latencies": {"request": 12, "kong": 3, "proxy": 9},
    "request_id": "5f0c1d",
    "user_id": "u-1",
}


def test_a_record_is_method_path_status_latency_and_request_id():
    assert brief(RECORD) == "POST /api/v1/auth/login 401 12ms 5f0c1d"  # never the query string


def test_missing_fields_do_not_break_the_line():
    assert brief({"request": {"method": "GET", "uri": "/x", "id": "k1"}}) == "GET /x ? - k1"
    assert brief_line("") is None
    assert brief_line("not json") == "not json"


def test_follow_prints_each_appended_record(tmp_path):
    log = tmp_path / "access.log"
    log.write_text("")
    out, stop = io.StringIO(), threading.Event()
    emulator = tmp_path / "emulator.log"
    emulator.write_text("")
    sources = {log: brief_line, emulator: problem_line}
    thread = threading.Thread(target=follow, args=(sources, lambda: not stop.is_set(), out, 0.01))
    thread.start()
    try:
        with open(log, "a") as fh:
            fh.write(json.dumps(RECORD)[:20])
            fh.flush()
            time.sleep(0.1)  # half a line: nothing yet
            assert out.getvalue() == ""
            fh.write(json.dumps(RECORD)[20:] + "\n")
        with open(emulator, "a") as fh:
            fh.write("2026/12/07 08:40:42 [INFO] kong_emulator: listening\n")
            fh.write("2026/12/07 08:40:43 [ERROR] kong_emulator: boom\n")
        deadline = time.monotonic() + 5
        while out.getvalue().count("\n") < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join(5)
    assert out.getvalue().splitlines() == [
        "POST /api/v1/auth/login 401 12ms 5f0c1d",
        "2026/12/07 08:40:43 [ERROR] kong_emulator: boom",  # the emulator's errors, not its info lines
    ]
