"""process_* metrics of every process of a gunicorn pod, labelled by ``pid`` and ``role`` (master or worker).

prometheus_client's ProcessCollector describes the process that answers the scrape only, and its multiprocess mode
has no process metrics at all: under gunicorn a scrape reaches one worker, so CPU and memory of the others (and of
the master) would be invisible. ``PodProcessCollector`` reads them from /proc at scrape time: the answering process,
its gunicorn master (the parent, when its command line names gunicorn) and every child of that master. Outside
gunicorn (development, tests) it reports the current process alone, as role ``worker``.

    registry.register(PodProcessCollector())   # process_cpu_seconds_total{pid,role}, process_resident_memory_bytes...
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client.core import Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

__all__ = ["PodProcessCollector", "gunicorn_processes"]


def _is_gunicorn(pid: int, proc: Path) -> bool:
    try:
        return b"gunicorn" in (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return False


def _children(pid: int, proc: Path) -> list[int]:
    try:
        text = (proc / str(pid) / "task" / str(pid) / "children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def gunicorn_processes(proc: str | os.PathLike = "/proc") -> list[tuple[int, str]]:
    """(pid, role) of the pod's processes: the gunicorn master and its workers, or this process alone."""
    root, me, parent = Path(proc), os.getpid(), os.getppid()
    if not _is_gunicorn(parent, root):
        return [(me, "worker")]
    workers = _children(parent, root) or [me]
    return [(parent, "master"), *((pid, "worker") for pid in sorted(set(workers) | {me}))]


class PodProcessCollector(Collector):
    """ProcessCollector's families for each process of `processes()`, every sample with `pid` and `role` labels."""

    def __init__(
        self, processes: Callable[[], list[tuple[int, str]]] = gunicorn_processes, proc: str = "/proc"
    ) -> None:
        self.processes, self.proc = processes, proc

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for pid, role in self.processes():
            collector = ProcessCollector(pid=lambda pid=pid: pid, proc=self.proc, registry=None)
            for family in collector.collect():  # nothing for a process that exited meanwhile
                out = merged.setdefault(family.name, Metric(family.name, family.documentation, family.type))
                for sample in family.samples:
                    out.add_sample(sample.name, {**sample.labels, "pid": str(pid), "role": role}, sample.value)
        yield from merged.values()
