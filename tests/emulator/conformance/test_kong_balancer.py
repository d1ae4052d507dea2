"""Kong 3.9.1's tries and health checks: kong/init.lua Kong.balancer (set_more_tries(service.retries), each retry
asks the balancer again after reporting the failed try), nginx's default `proxy_next_upstream error timeout`
(nginx_kong.lua sets none) and its rule for non-idempotent methods, lua-resty-healthcheck as Kong configures it
(kong/runloop/balancer/healthcheckers.lua)."""

from __future__ import annotations

import pytest
import requests
from kong_emulator.testing import EmulatorProcess, free_port
from proxy_support import Upstream


def _yml(targets: list[str], retries: int, read_timeout: int = 60000, healthchecks: str = "") -> str:
    lines = "".join(f"  - target: {t}\n" for t in targets)
    return (
        '_format_version: "3.0"\n'
        f"upstreams:\n- name: pool\n  targets:\n{lines}{healthchecks}"
        f"services:\n- name: s\n  host: pool\n  port: 80\n  retries: {retries}\n  read_timeout: {read_timeout}\n"
        "  routes:\n  - name: r\n    paths: [/]\n    strip_path: false\n"
    )


@pytest.fixture(scope="module")
def live():
    up = Upstream("live").start()
    yield up
    up.stop()


@pytest.mark.parametrize(("retries", "failures"), [(0, 2), (1, 0)])
def test_a_refused_connect_goes_to_the_next_target_within_retries(live, retries, failures):
    # round robin over a dead and a live target: every other request starts on the dead one
    dead = f"127.0.0.1:{free_port()}"
    with EmulatorProcess(_yml([dead, f"127.0.0.1:{live.port}"], retries), []) as gw:
        codes = [requests.get(gw.url + "/who", timeout=10).status_code for _ in range(4)]
    assert codes.count(502) == failures
    assert codes.count(200) == 4 - failures


def test_a_refused_connect_is_retried_even_for_a_post(live):
    # the request never left: nginx passes any method to the next server
    dead = f"127.0.0.1:{free_port()}"
    with EmulatorProcess(_yml([dead, f"127.0.0.1:{live.port}"], 1), []) as gw:
        codes = [requests.post(gw.url + "/echo", data=b"x", timeout=10).status_code for _ in range(4)]
    assert codes == [200] * 4


@pytest.fixture
def slow_pair():
    ups = [Upstream("a").start(), Upstream("b").start()]
    yield ups
    for up in ups:
        up.stop()


@pytest.mark.parametrize(("method", "tries"), [("GET", 4), ("POST", 1)])
def test_a_read_timeout_is_retried_only_for_an_idempotent_method(slow_pair, method, tries):
    # proxy_next_upstream timeout: "requests with a non-idempotent method (POST, LOCK, PATCH) are not passed to the
    # next server if a request has been sent to an upstream server"; the last try's timeout is nginx's 504
    targets = [f"127.0.0.1:{up.port}" for up in slow_pair]
    with EmulatorProcess(_yml(targets, 3, read_timeout=300), []) as gw:
        r = requests.request(method, gw.url + "/slow?ms=2000", timeout=20)
    assert r.status_code == 504
    assert sum(up.slow_calls for up in slow_pair) == tries  # retries: 3 → at most 4 tries


# ---- active health checks and names -------------------------------------------------------------------------------


class RawProbeTarget:
    """A TCP server that records each request head and answers `status`."""

    def __init__(self, status: int = 200) -> None:
        import socket
        import threading

        self.status, self.heads = status, []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data and (chunk := conn.recv(4096)):
                    data += chunk
                self.heads.append(data.decode("latin-1"))
                conn.sendall(f"HTTP/1.1 {self.status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())

    def close(self) -> None:
        self.sock.close()


def _active(kind="http", path="/who", interval=0.3, headers="") -> str:
    return (
        "  healthchecks:\n    active:\n"
        f"      type: {kind}\n      http_path: {path}\n      timeout: 1\n{headers}"
        f"      healthy:\n        interval: {interval}\n        successes: 1\n"
        f"      unhealthy:\n        interval: {interval}\n        tcp_failures: 1\n        http_failures: 1\n"
    )


def _wait_for(predicate, seconds=10.0):
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_the_probe_is_an_http_1_0_get_with_the_targets_name_as_host():
    # checker:run_single_check: "GET %s HTTP/1.0\r\n%sHost: %s\r\n\r\n" with active.headers and the target's name
    # (healthcheckers.lua:52-53, no host_header); "localhost" from the hosts file / RFC 6761 (client.lua:527-532)
    probe = RawProbeTarget()
    headers = "      headers:\n        X-Probe: [a, b]\n"
    try:
        with EmulatorProcess(_yml([f"localhost:{probe.port}"], 0, healthchecks=_active(headers=headers)), []):
            assert _wait_for(lambda: probe.heads)
        head = probe.heads[0]
        assert head.startswith("GET /who HTTP/1.0\r\n")
        assert "X-Probe: a\r\nX-Probe: b\r\n" in head and "Host: localhost\r\n" in head
    finally:
        probe.close()


def test_tcp_active_checks_do_not_run_in_the_http_subsystem():
    probe = RawProbeTarget()  # healthcheckers.lua:243-250: intervals forced to 0
    try:
        with EmulatorProcess(_yml([f"127.0.0.1:{probe.port}"], 0, healthchecks=_active(kind="tcp")), []):
            import time

            time.sleep(1.2)
        assert probe.heads == []
    finally:
        probe.close()


def test_active_checks_take_a_dead_target_out_and_bring_it_back(live):
    # the dead target gets no traffic once a probe failed (tcp_failures: 1), and comes back after one success
    spare = Upstream("spare")
    targets = [f"127.0.0.1:{live.port}", f"127.0.0.1:{spare.port}"]
    with EmulatorProcess(_yml(targets, 0, healthchecks=_active()), []) as gw:

        def codes():
            return [requests.get(gw.url + "/who", timeout=10) for _ in range(4)]

        assert _wait_for(lambda: all(r.status_code == 200 for r in codes()))  # spare was never up: taken out
        spare.start()
        try:
            assert _wait_for(lambda: "spare" in [r.text for r in codes()])
        finally:
            spare.stop()


def test_an_unhealthy_status_from_the_probe_takes_the_target_out(live):
    probe = RawProbeTarget(status=500)  # 500 is in active.unhealthy.http_statuses by default
    try:
        targets = [f"127.0.0.1:{live.port}", f"127.0.0.1:{probe.port}"]
        with EmulatorProcess(_yml(targets, 0, healthchecks=_active()), []) as gw:
            assert _wait_for(lambda: len(probe.heads) >= 2)  # the first probe's report is in
            assert all(requests.get(gw.url + "/who", timeout=10).text == "live" for _ in range(4))
            assert all(h.startswith("GET /who HTTP/1.0") for h in probe.heads)  # probes only, no proxied request
    finally:
        probe.close()


def test_names_resolve_as_kongs_dns_client_does(tmp_path):
    import asyncio

    from kong_emulator.runloop.dns import KongResolver, parse_hosts

    hosts = tmp_path / "hosts"
    hosts.write_text("10.1.2.3 auth.storyverse.svc.cluster.local auth # comment\n::1 ip6only\n10.9.9.9 auth\n")
    assert parse_hosts(hosts.read_text()) == {
        "auth.storyverse.svc.cluster.local": "10.1.2.3",
        "auth": "10.1.2.3",
        "localhost": "127.0.0.1",  # client.lua:527-532, always defined
    }
    resolver = KongResolver(str(hosts))
    assert asyncio.run(resolver.resolve("Auth")) == ["10.1.2.3"]
    assert asyncio.run(resolver.resolve("localhost")) == ["127.0.0.1"]  # A, never ::1


def test_the_upstreams_host_header_names_the_upstream_request(live):
    # balancer/init.lua:395-399 hostname = upstream.host_header; :440-455 set_host_header adds a non-default port
    yml = _yml([f"127.0.0.1:{live.port}"], 0).replace("- name: pool\n", "- name: pool\n  host_header: api.internal\n")
    with EmulatorProcess(yml, []) as gw:
        r = requests.get(gw.url + "/echo", timeout=10)
    assert dict(r.json()["headers"])["Host"] == f"api.internal:{live.port}"
