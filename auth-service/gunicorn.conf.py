"""gunicorn settings read from the working directory (the image's /app): prometheus_client's multiprocess mode.

Workers write their metric samples under ``PROMETHEUS_MULTIPROC_DIR``; the directory is emptied when gunicorn starts
(a restarted container must not add the previous run's counts) and a dead worker's live gauges are dropped.
Everything else stays in ``GUNICORN_CMD_ARGS`` (the chart's auth.gunicornArgs).
"""

import os
import shutil

from prometheus_client import multiprocess


def on_starting(server) -> None:
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path, exist_ok=True)


def child_exit(server, worker) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)
