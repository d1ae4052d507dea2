"""The one place that reads the clock. Tests inject ``CLOCK`` (a ``() -> float``) into the app config."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from flask import current_app


def now_ts() -> float:
    clock = current_app.config.get("CLOCK") or time.time
    return float(clock())


def now() -> datetime:
    return datetime.fromtimestamp(now_ts(), tz=UTC)
