"""Pure request-id logic: no PDK calls."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

# A client-supplied id is kept only if it is short and harmless in logs and headers.
_WELL_FORMED = re.compile(r"\A[A-Za-z0-9._:-]{8,128}\Z")


def choose_request_id(
    client_value: str | None, trust_client: bool, mint: Callable[[], str] = lambda: uuid.uuid4().hex
) -> str:
    """The id for this request: the client's when trusted and well-formed, else a fresh one."""
    if trust_client and client_value and _WELL_FORMED.match(client_value):
        return client_value
    return mint()
