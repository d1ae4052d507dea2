"""gunicorn entry point: ``gunicorn --chdir auth-service wsgi:app``.

A setting the service must not start with prints one line to stderr and exits 4, gunicorn's "App failed to load"
code, so the arbiter stops instead of respawning workers (and ``flask`` commands exit non-zero the same way).
"""

import os

from storyverse_auth import create_app
from storyverse_auth.config import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    # one write(2): gunicorn's master logs to the same stderr and must not split the line
    os.write(2, f"storyverse-auth: {exc}\n".encode())
    raise SystemExit(4) from None
