"""In-process cache of subjects already over a limit (envoy's over-limit cache): while an entry lives, the request
is rejected without a Redis call. Entries expire at the limit's reset; the cache is bounded."""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class Blocked:
    until_ms: int
    kind: str  # "rate" | "quota"
    name: str
    quota: int
    window_s: int
    reset_ms: int  # absolute epoch ms at which the limit is whole again / the day ends
    retry_at_ms: int = 0  # when the client may retry (Retry-After); until_ms may be earlier (cache trust cap)


class OverLimitCache:
    def __init__(self, max_entries: int = 10_000) -> None:
        self._entries: dict[str, Blocked] = {}
        self._max = max_entries
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, now_ms: int) -> Blocked | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.until_ms <= now_ms:
            self._entries.pop(key, None)
            return None
        return entry

    def put(self, key: str, entry: Blocked, now_ms: int) -> None:
        with self._lock:
            if len(self._entries) >= self._max:
                self._prune(now_ms)
            self._entries[key] = entry

    def _prune(self, now_ms: int) -> None:
        for key in [k for k, e in self._entries.items() if e.until_ms <= now_ms]:
            del self._entries[key]
        while len(self._entries) >= self._max:  # still full of live entries: drop the oldest inserted
            self._entries.pop(next(iter(self._entries)))
