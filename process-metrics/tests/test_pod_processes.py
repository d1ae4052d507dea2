"""storyverse_process_metrics: the pod's processes from a /proc tree, and their process_* samples labelled."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, generate_latest
from storyverse_process_metrics import PodProcessCollector, gunicorn_processes


def _fake_proc(tmp_path, master_cmdline: bytes, children: str):
    parent = os.getppid()
    (tmp_path / str(parent) / "task" / str(parent)).mkdir(parents=True)
    (tmp_path / str(parent) / "cmdline").write_bytes(master_cmdline)
    (tmp_path / str(parent) / "task" / str(parent) / "children").write_text(children)
    return tmp_path


def test_under_gunicorn_the_master_and_every_worker(tmp_path):
    me = os.getpid()
    proc = _fake_proc(tmp_path, b"python\x00-m\x00gunicorn\x00wsgi:app\x00", f"{me} 4242 ")
    workers = [(pid, "worker") for pid in sorted({me, 4242})]
    assert gunicorn_processes(proc) == [(os.getppid(), "master"), *workers]


def test_outside_gunicorn_only_this_process(tmp_path):
    proc = _fake_proc(tmp_path, b"bash\x00", "")
    assert gunicorn_processes(proc) == [(os.getpid(), "worker")]


def test_samples_carry_pid_and_role():
    registry = CollectorRegistry()
    registry.register(PodProcessCollector(lambda: [(os.getpid(), "worker"), (999999999, "worker")]))
    text = generate_latest(registry).decode()
    assert f'process_cpu_seconds_total{{pid="{os.getpid()}",role="worker"}}' in text
    assert 'pid="999999999"' not in text  # a process that is gone has no samples
