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
