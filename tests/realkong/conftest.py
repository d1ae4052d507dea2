"""Opt-in: the end-to-end journeys against REAL Kong 3.9 in Docker (`make test-kong` runs scripts/test_kong.py).

Collected only when SV_REAL_KONG=1, which scripts/test_kong.py sets once a Docker engine has answered: under
`make test` (pytest.ini `testpaths = tests`) nothing in this directory is collected or imported except this file, and
no skipped tests show up for it.

One base-URL fixture for both gateways: the journeys in tests/e2e take `stack` (`.url` = the gateway's base URL,
`.auth_env` for the auth CLI; `stack["url"]` works too) and `backend` (base URLs of the stand-in services). For the
emulator tests/e2e's own fixtures provide them; here they point at the real-Kong stack (realkong_support.py), and
the test modules import the journey functions themselves, so the assertions are the same code.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ENABLE_VAR = "SV_REAL_KONG"
ENABLED = os.environ.get(ENABLE_VAR) == "1"
E2E_DIR = Path(__file__).resolve().parents[1] / "e2e"

# Relative to this directory: without the variable every file here is ignored at collection (not skipped).
collect_ignore_glob = [] if ENABLED else ["*"]

if ENABLED and str(E2E_DIR) not in sys.path:
    sys.path.insert(0, str(E2E_DIR))  # e2e_support and the journey modules, imported by name as tests/e2e does


@dataclass
class Gateway:
    """What the journeys need from a gateway under test."""

    url: str
    auth_env: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, key: str):
        return getattr(self, key)


@pytest.fixture(scope="session")
def real_kong():
    """The whole stack in Docker (images built from this checkout), torn down at the end of the session."""
    from realkong_support import RealKongStack
    from test_journeys import DATABASE, REDIS_DB

    stack = RealKongStack(
        database=DATABASE, redis_db=REDIS_DB, issuer="http://journeys.storyverse.test",
        auth_extra={"DEVICE_POLL_INTERVAL": "1"},
    ).up()  # fmt: skip
    old_pgport = os.environ.get("PGPORT")
    # the journeys reach PostgreSQL as psycopg2.connect(host="127.0.0.1", ...): libpq takes the port from PGPORT
    os.environ["PGPORT"] = str(stack.port("postgres", "5432/tcp"))
    try:
        yield stack
    finally:
        if old_pgport is None:
            os.environ.pop("PGPORT", None)
        else:
            os.environ["PGPORT"] = old_pgport
        stack.down()


@pytest.fixture(scope="session")
def gateway_url(real_kong) -> str:
    """The base URL of the gateway under test: real Kong's published proxy port."""
    return real_kong.proxy_url


@pytest.fixture(scope="session")
def stack(real_kong, gateway_url) -> Gateway:
    return Gateway(url=gateway_url, auth_env=real_kong.host_auth_env())


@pytest.fixture(scope="session")
def backend(real_kong) -> dict[str, str]:
    return real_kong.backend_urls()
