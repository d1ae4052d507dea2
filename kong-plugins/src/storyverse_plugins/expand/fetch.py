"""Parallel GETs within a time budget: a process-wide thread pool and keep-alive connection pool (urllib3).

The plugin server already runs each event in its own thread (threading mode, the default; gevent mode has no
monkey-patching, so this blocking I/O would stall it). One request's fetches run on at most `max_concurrency` "lanes"
of a shared executor; the event thread waits for them at most until the deadline, so the response never waits
longer than the budget, whatever the services do. A fetch still running at the deadline finishes (bounded by its
own timeout) on its pool thread, and its result is dropped.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_futures

import urllib3

from storyverse_plugins.expand.core import ERROR, TIMEOUT, Outcome, read_answer
from storyverse_plugins.expand.schema import Config

POOL_THREADS = 64  # per plugin-server process: lanes of concurrent requests share them
_MIN_CALL_S = 0.005  # less budget than this left: don't start a fetch

Getter = Callable[[str, Mapping[str, str], float], Outcome]  # (url, headers, timeout in s) -> Outcome

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_http: urllib3.PoolManager | None = None


def shared_executor() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(POOL_THREADS, thread_name_prefix="sv-expand")
        return _executor


def shared_http() -> urllib3.PoolManager:
    """Keep-alive connections per service host, shared by every instance (block=False: never wait for one)."""
    global _http
    with _lock:
        if _http is None:
            _http = urllib3.PoolManager(num_pools=32, maxsize=POOL_THREADS, block=False, retries=False)
        return _http


def http_getter(cfg: Config, http: urllib3.PoolManager | None = None) -> Getter:
    """A GET that never follows redirects (the configured URL is the only place we go) and reads a bounded body."""

    def get(url: str, headers: Mapping[str, str], timeout_s: float) -> Outcome:
        pool = http or shared_http()
        try:
            resp = pool.request(
                "GET",
                url,
                headers={"Accept": "application/json", **headers},
                timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s),
                retries=False,
                redirect=False,
                preload_content=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            return Outcome(reason=_reason(exc))
        try:
            raw = resp.read(cfg.max_body_bytes + 1)
            if len(raw) > cfg.max_body_bytes:
                resp.close()  # don't drain a huge body to keep the connection
                return Outcome(reason=ERROR)
            resp.release_conn()
        except urllib3.exceptions.HTTPError as exc:
            resp.close()
            return Outcome(reason=_reason(exc))
        return read_answer(resp.status, raw, cfg)

    return get


def _reason(exc: urllib3.exceptions.HTTPError) -> str:
    """timeout for a connect or read timeout; error for the rest (urllib3's refused connection, NewConnectionError,
    subclasses ConnectTimeoutError for historical reasons: it is not a timeout)."""
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        return ERROR
    return TIMEOUT if isinstance(exc, urllib3.exceptions.TimeoutError) else ERROR


class Fetcher:
    """`fetch_all(urls, headers)` → {url: Outcome} for the fetches that came back within the budget."""

    def __init__(
        self,
        cfg: Config,
        get: Getter | None = None,
        executor: ThreadPoolExecutor | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.get = get or http_getter(cfg)
        self.executor = executor
        self.clock = clock

    def fetch_all(self, urls: Iterable[str], headers: Mapping[str, str]) -> dict[str, Outcome]:
        pending = deque(dict.fromkeys(urls))
        if not pending:
            return {}
        budget_s = self.cfg.budget_ms / 1000
        deadline = self.clock() + budget_s
        results: dict[str, Outcome] = {}
        closed = threading.Event()  # set at the deadline: lanes start nothing new
        lock = threading.Lock()

        def lane() -> None:
            while not closed.is_set():
                try:
                    url = pending.popleft()
                except IndexError:
                    return
                left = deadline - self.clock()
                if left < _MIN_CALL_S:
                    return  # the deadline passed: what is left counts as a timeout
                outcome = self._get(url, headers, min(self.cfg.timeout_ms / 1000, left))
                with lock:
                    if not closed.is_set():
                        results[url] = outcome

        executor = self.executor or shared_executor()
        lanes = [executor.submit(lane) for _ in range(min(len(pending), self.cfg.max_concurrency))]
        wait_futures(lanes, timeout=max(0.0, deadline - self.clock()))
        with lock:
            closed.set()
            return dict(results)

    def _get(self, url: str, headers: Mapping[str, str], timeout_s: float) -> Outcome:
        try:
            return self.get(url, headers, timeout_s)
        except Exception:  # noqa: BLE001 - one failed fetch is one marked error, never a failed response
            return Outcome(reason=ERROR)
