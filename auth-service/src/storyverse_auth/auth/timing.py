"""Equal response times for endpoints that must not reveal whether an account exists (register, forgot).

The work differs by a database write and an e-mail (~1 ms); a floor longer than either path hides it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from flask import current_app


@contextmanager
def response_floor() -> Iterator[None]:
    floor = float(current_app.config["ENUMERATION_FLOOR_SECONDS"])
    started = time.perf_counter()
    try:
        yield
    finally:
        remaining = floor - (time.perf_counter() - started)
        if remaining > 0:
            time.sleep(remaining)
