"""gunicorn settings read from the working directory (the image's /app, or --chdir / -c): redacted logs and
prometheus_client's multiprocess mode. Workers, threads and timeouts stay in ``GUNICORN_CMD_ARGS`` (the chart's
auth.gunicornArgs) or on the command line.

Workers write their metric samples under ``PROMETHEUS_MULTIPROC_DIR``; the directory is emptied when gunicorn starts
(a restarted container must not add the previous run's counts) and a dead worker's live gauges are dropped.
"""

import os
import shutil

from prometheus_client import multiprocess

# Access and error logs never carry query strings, credentials or tokens (storyverse_auth/access_log.py).
logger_class = "storyverse_auth.access_log.RedactingLogger"


def on_starting(server) -> None:
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path, exist_ok=True)


def child_exit(server, worker) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)
