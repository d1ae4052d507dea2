"""A real local Redis Cluster (3 masters + 3 replicas from Debian's redis-server) on free ports, per module.

Always torn down: every process is killed and the temp dir removed, even when a test fails.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import redis

NODE_TIMEOUT_MS = 2000


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(n: int) -> list[int]:
    """Ports whose cluster bus port (port + 10000) is free and valid too."""
    ports: list[int] = []
    for port in random.sample(range(20000, 40000), 400):
        if _free(port) and _free(port + 10000):
            ports.append(port)
            if len(ports) == n:
                return ports
    raise RuntimeError("no free ports for a local Redis Cluster")


class LocalCluster:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sv-redis-cluster-"))
        self.ports = free_ports(6)
        self.procs: dict[int, subprocess.Popen] = {}

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(f"127.0.0.1:{p}" for p in self.ports)

    def start(self) -> None:
        for port in self.ports:
            args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes"]
            args += ["--cluster-config-file", f"nodes-{port}.conf", "--cluster-node-timeout", str(NODE_TIMEOUT_MS)]
            args += ["--save", "", "--appendonly", "no", "--dir", str(self.dir)]
            self.procs[port] = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        for port in self.ports:
            self._wait(lambda p=port: redis.Redis(port=p, socket_timeout=0.2).ping())
        subprocess.run(
            ["redis-cli", "--cluster", "create", *self.nodes, "--cluster-replicas", "1", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        for port in self.ports:
            self._wait(lambda p=port: self.info(p)["cluster_state"] == "ok" and self._replicated(p))

    @staticmethod
    def _replicated(port: int) -> bool:
        """Masters have their replica attached and replicas are in sync (so a failover keeps the data)."""
        info = redis.Redis(port=port, socket_timeout=0.5).info("replication")
        if info["role"] == "master":
            return info["connected_slaves"] >= 1
        return info.get("master_link_status") == "up"

    def info(self, port: int) -> dict:
        return redis.Redis(port=port, socket_timeout=0.5, decode_responses=True).cluster("INFO")

    def master_of(self, key: str) -> int:
        """The port of the master serving the key's slot (asked from a live node)."""
        slot = redis.cluster.key_slot(key.encode())
        live = next(p for p in self.ports if self.procs[p].poll() is None)
        shards = redis.Redis(port=live, decode_responses=True).execute_command("CLUSTER SLOTS")
        for start, end, master, *_ in shards:
            if start <= slot <= end:
                return int(master[1])
        raise LookupError(slot)

    def master_after_failover(self, key: str, old: int, timeout: float = 15.0) -> int:
        """master_of(key) once the node asked has learnt that `old` is gone (cluster state travels by gossip, so a
        client can already be served by the promoted replica while another node still names the dead master)."""
        deadline = time.monotonic() + timeout
        while (port := self.master_of(key)) == old and time.monotonic() < deadline:
            time.sleep(0.2)
        return port

    def kill(self, port: int) -> None:
        self.procs[port].kill()  # SIGKILL: no goodbye to the cluster
        self.procs[port].wait(timeout=5)

    @staticmethod
    def _wait(probe, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if probe() is not False:
                    return
            except (redis.RedisError, OSError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("redis cluster did not become ready")
            time.sleep(0.05)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    local = LocalCluster()
    try:
        local.start()
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="module")
def auth_database(request) -> str:
    """A fresh PostgreSQL database for an auth-service module (named after it), dropped afterwards."""
    import psycopg2

    name = f"storyverse_auth_{request.module.__name__.removeprefix('test_')}"

    def run(statement: str) -> None:
        conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement)
        conn.close()

    run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    run(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
