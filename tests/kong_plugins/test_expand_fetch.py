"""sv-expand fetching: parallel lanes, the time budget, per-request concurrency, and the real HTTP getter.

Budget tests wait on events, not on wall-clock sleeps: a fetch that "hangs" blocks until the test releases it.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from storyverse_plugins.expand.core import Outcome
from storyverse_plugins.expand.fetch import Fetcher, http_getter
from storyverse_plugins.expand.schema import parse_config

OK = Outcome(resource={"id": "1"})


def config(**over):
    raw = {"expansions": [{"name": "characters", "id_field": "character_ids", "url": "http://c/x"}]}
    raw.update(over)
    return parse_config(raw)


@pytest.fixture
def executor():
    pool = ThreadPoolExecutor(16)
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


def test_fetches_run_in_parallel(executor):
    barrier = threading.Barrier(3, timeout=2)  # breaks unless all three fetches are in flight together

    def get(url, headers, timeout_s):
        barrier.wait()
        return OK

    got = Fetcher(config(budget_ms=3000, timeout_ms=3000), get, executor).fetch_all(["a", "b", "c"], {})
    assert got == {"a": OK, "b": OK, "c": OK}


def test_the_budget_bounds_the_wait_and_late_fetches_are_dropped(executor):
    release = threading.Event()

    def get(url, headers, timeout_s):
        if url == "slow":
            release.wait(5)
        return OK

    fetcher = Fetcher(config(budget_ms=100, timeout_ms=100), get, executor)
    start = time.monotonic()
    got = fetcher.fetch_all(["fast", "slow"], {})
    elapsed = time.monotonic() - start
    release.set()
    assert got == {"fast": OK}  # "slow" is absent: compose marks it timeout
    assert elapsed < 1.0  # returned at the budget (100 ms), not when the fetch finished


def test_each_fetch_gets_the_smaller_of_its_timeout_and_the_budget_left(executor):
    now = [100.0]
    seen = []

    def get(url, headers, timeout_s):
        seen.append(round(timeout_s, 3))
        now[0] += 0.2  # each fetch "takes" 200 ms on the fake clock
        return OK

    fetcher = Fetcher(config(budget_ms=500, timeout_ms=250, max_concurrency=1), get, executor, clock=lambda: now[0])
    got = fetcher.fetch_all(["a", "b", "c", "d"], {})
    assert seen == [0.25, 0.25, 0.1]  # the 4th would start after the deadline: never started
    assert set(got) == {"a", "b", "c"}


def test_concurrency_per_request_is_capped(executor):
    lock, active, peak = threading.Lock(), [0], [0]

    def get(url, headers, timeout_s):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.01)
        with lock:
            active[0] -= 1
        return OK

    got = Fetcher(config(budget_ms=3000, max_concurrency=2), get, executor).fetch_all([str(i) for i in range(8)], {})
    assert len(got) == 8 and peak[0] <= 2


def test_a_failing_getter_is_one_error_and_headers_are_passed(executor):
    def get(url, headers, timeout_s):
        assert headers == {"X-User-Id": "u1"}
        if url == "boom":
            raise RuntimeError("boom")
        return OK

    got = Fetcher(config(), get, executor).fetch_all(["boom", "ok", "ok"], {"X-User-Id": "u1"})
    assert got == {"boom": Outcome(reason="error"), "ok": OK}


def test_nothing_to_fetch():
    assert Fetcher(config(), lambda *a: OK).fetch_all([], {}) == {}


# -- the real getter against a local HTTP server ----------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/slow":
            time.sleep(0.5)
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        status = 404 if self.path == "/missing" else 200
        size = 5000 if self.path == "/huge" else 0
        body = json.dumps(
            {"item": {"id": self.path, "user": self.headers.get("X-User-Id"), "pad": "x" * size}}
        ).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up (timeout, oversized body): expected here


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_http_getter(server):
    get = http_getter(config(envelope_field="item", max_body_bytes=2048))
    ok = get(server + "/one", {"X-User-Id": "u1"}, 2.0)
    assert ok == Outcome(resource={"id": "/one", "user": "u1", "pad": ""})
    assert get(server + "/missing", {}, 2.0).reason == "not_found"
    assert get(server + "/redirect", {}, 2.0).reason == "error"  # never followed
    assert get(server + "/huge", {}, 2.0).reason == "error"  # over max_body_bytes
    assert get(server + "/slow", {}, 0.1).reason == "timeout"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    assert get(f"http://127.0.0.1:{closed_port}/x", {}, 0.5).reason == "error"  # connection refused
