"""Fail closed for every security plugin (issue 13), through the whole layer in Kong's real mode: the repository's
kong.yml, the emulator NOT strict (a failed plugin-server event is logged and the request goes on, as Kong 3.9.1's
mp_rpc.lua does), every plugin server, the real auth service, Redis, PostgreSQL and the sample backend.

For each of sv-jwt, sv-rbac, sv-quota and sv-quota-log: `kill -9` of its plugin server under load, SIGSTOP longer
than the plugin-server timeout (`emulator_reply_timeout = 2` here; Kong's is 60 s), and an uncaught exception in its
handler (kong-pluginserver answers the event with an error; kong-pdk's fallback server never answers it: Kong waits
for the timeout and goes on). Every protected request is then 503 `plugin_unavailable` from sv-edge's guard: never a
2xx, never a 401 for a valid token; no story is created uncharged; and the stack recovers by itself (the emulator
respawns a killed server, a continued one answers again).
Plus the two cases of the issue: a child creating a character while sv-rbac is killed, a basic family creating
more than 5 stories while sv-quota is killed.

sv-quota reserves a story unit in access and sv-quota-log settles it in log. When sv-quota-log is dead or hung at log
time the reservation lapses after reservation_ttl (RESERVATION_TTL here) and counts as charged: after each
sv-quota-log fault the test waits for the lapse and checks every created story against the committed count alone.

The four plugin servers run from test entry files that are the real plugins, served by kong-pluginserver as the
repository's entry files are, plus two switches: while the file `<tmp>/crash-<plugin>` exists, the handler's phase
method raises before the plugin's own code runs; a server started while `<tmp>/pdk-<plugin>` exists is kong-pdk's.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis
import requests
import yaml
from e2e_support import REPO, KongGateway, auth_env, render_kong_yml, repo_plugin, start_auth_service
from kong_emulator.testing import PluginEntry, free_port, wait_port

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_journeys import PASSWORD, Client, new_child
from test_quota_e2e import claims_of, held_units, quota_key, wait_for

REDIS_DB = 9
DATABASE = "storyverse_fail_closed"
TIMEOUT_S = 2  # the emulator's plugin-server read timeout in this module (Kong: 60 s, not configurable per plugin)
RESERVATION_TTL = 5  # s: the daily quota's reservation_ttl in this module (the schema's minimum; kong.yml: 120)
GUARDED = ("sv-jwt", "sv-rbac", "sv-quota", "sv-quota-log")
# plugin → (module, class, priority name, phase the crash switch breaks)
ENTRIES = {
    "sv-jwt": ("storyverse_plugins.jwt_auth.handler", "Plugin", "priority", "access"),
    "sv-rbac": ("storyverse_plugins.rbac.handler", "Plugin", "priority", "access"),
    "sv-quota": ("storyverse_plugins.quota.handler", "Plugin", "priority", "access"),
    "sv-quota-log": ("storyverse_plugins.quota.handler", "LogPlugin", "log_priority", "access"),
}
LOG_CRASH = """
    def log(self, kong):  # the settle never runs while {crash!r} exists
        if os.path.exists({crash!r}):
            raise RuntimeError("injected crash at log time (tests/e2e/test_fail_closed_e2e.py)")
        return super().log(kong)
"""
SHIM = '''#!/usr/bin/env python3
"""Test entry file: the real {name} plugin, whose {phase} raises while {crash} exists; served like the repository's
entry files by kong-pluginserver, or by kong-pdk's server (the fallback) when {pdk} exists at start."""
import os

if not os.path.exists({pdk!r}):
    import kong_pluginserver.boot  # noqa: F401 - first, as in kong-plugins/plugins/*.py

from {module} import {cls} as _Real, Schema, version, {prio} as priority


class Plugin(_Real):
    def {phase}(self, kong):
        if os.path.exists({crash!r}):
            raise RuntimeError("injected crash (tests/e2e/test_fail_closed_e2e.py)")
        return super().{phase}(kong)
{log}


if __name__ == "__main__":
    if os.path.exists({pdk!r}):
        from kong_pdk.cli import start_dedicated_server
    else:
        from kong_pluginserver import start_dedicated_server

    start_dedicated_server({name!r}, Plugin, version, priority, Schema)
'''


def _plugins(workdir: Path) -> list[PluginEntry]:
    from kong_emulator.config.localenv import read_conf_values

    names = [n.strip() for n in read_conf_values(REPO / "kong.conf")["pluginserver_names"].split(",")]
    out = []
    for name in names:
        if name not in ENTRIES:
            out.append(repo_plugin(name))
            continue
        module, cls, prio, phase = ENTRIES[name]
        shim = workdir / f"{name}.py"
        crash, pdk = str(workdir / f"crash-{name}"), str(workdir / f"pdk-{name}")
        log = LOG_CRASH.format(crash=str(workdir / f"crash-log-{name}")) if name == "sv-quota-log" else ""
        shim.write_text(
            SHIM.format(name=name, module=module, cls=cls, prio=prio, phase=phase, crash=crash, pdk=pdk, log=log)
        )
        out.append(PluginEntry(name, shim))
    return out


def _short_reservations(kong_yml: str) -> str:
    """The repository's kong.yml with the daily quota's reservation_ttl at RESERVATION_TTL (sv-quota, sv-quota-log)."""
    doc, changed = yaml.safe_load(kong_yml), []

    def walk(node) -> None:
        if isinstance(node, dict):
            config = node.get("config") if node.get("name") in ("sv-quota", "sv-quota-log") else None
            quota = config.get("quota") if isinstance(config, dict) else None
            if isinstance(quota, dict) and quota.get("enabled"):
                quota["reservation_ttl"] = RESERVATION_TTL
                changed.append(node["name"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    assert {"sv-quota", "sv-quota-log"} <= set(changed), changed
    return yaml.safe_dump(doc, sort_keys=False)


@pytest.fixture(scope="module")
def stack(backend):
    redis.Redis(db=REDIS_DB).flushdb()
    workdir = Path(tempfile.mkdtemp(prefix="svfc", dir="/tmp"))
    port = free_port()
    issuer = "http://failclosed.storyverse.test"
    env = auth_env(DATABASE, REDIS_DB, issuer, DEVICE_POLL_INTERVAL="1")
    auth = start_auth_service(port, env)
    auth_url = f"http://127.0.0.1:{port}"
    gw = KongGateway(_short_reservations(render_kong_yml(auth_url, backend, issuer, REDIS_DB)), _plugins(workdir))
    gw.conf_extra = {
        "emulator_reply_timeout": str(TIMEOUT_S),
        "nginx_worker_processes": "1",
        "trusted_ips": "127.0.0.1",
    }
    try:
        wait_port(port, seconds=60, proc=auth)
        gw.start()
        gw.crash_dir, gw.auth_url = workdir, auth_url
        yield gw
    finally:
        gw.stop()
        auth.terminate()
        auth.wait(10)


class Caller(Client):
    """A client with an address of its own (X-Real-IP from a trusted peer): one test's IP limits and abuse blocks
    never reach another's."""

    def __init__(self, base: str) -> None:
        super().__init__(base)
        self.ip = f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"

    def call(self, method: str, path: str, json_body=None, token: str | None = None, **kw) -> requests.Response:
        kw["headers"] = {**kw.get("headers", {}), "X-Real-IP": self.ip}
        return super().call(method, path, json_body, token, **kw)


def new_parent(stack) -> Client:
    """A basic family's parent, registered at the auth service itself (the gateway limits /auth/register per IP)."""
    email = f"parent-{uuid.uuid4().hex[:10]}@example.com"
    body = {"email": email, "password": PASSWORD, "display_name": "Robin", "time_zone": "Europe/London"}
    assert requests.post(stack.auth_url + "/api/auth/register", json=body, timeout=30).status_code == 202
    login = requests.post(stack.auth_url + "/api/auth/login", json={"email": email, "password": PASSWORD}, timeout=30)
    assert login.status_code == 200, login.text
    parent = Caller(stack.url)
    parent.take(login)
    return parent


# -- faults ----------------------------------------------------------------------------------------------------------


def server_pid(gw, name: str, seconds: float = 30.0) -> int:
    """The pid of `name`'s plugin server under the emulator (a respawned one once it is back)."""
    deadline = time.monotonic() + seconds
    needle = f"/{name}.py"
    while True:
        children = Path(f"/proc/{gw.proc.pid}/task/{gw.proc.pid}/children").read_text().split()
        for child in children:
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except FileNotFoundError:
                continue
            if needle in cmdline and "--dump" not in cmdline:
                return int(child)
        assert time.monotonic() < deadline, f"no plugin server for {name}"
        time.sleep(0.1)


class Load:
    """Requests in parallel threads until stopped: (status, code) of every answer."""

    def __init__(self, send, threads: int = 4) -> None:
        self.send, self.results, self._stop = send, [], threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        while not self._stop.is_set():
            resp = self.send()
            code = resp.json().get("code") if resp.headers.get("Content-Type", "").startswith("application/") else None
            self.results.append((resp.status_code, code))

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)


def recovered(check, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.3)
    return False


def create_story(client: Client, n: int = 0) -> requests.Response:
    return client.call("POST", "/stories", {"title": f"Story {n}"})


def assert_only_closed(results, allowed_ok=(201,)):
    """Every answer is a success that went through every check, a 429, or the guard's 503: never a 401 (the token is
    valid), never another 5xx (Kong's fail-open paths), never a 2xx the checks did not allow."""
    for status, code in results:
        assert status in (*allowed_ok, 429, 503), (status, code)
        if status == 503:
            assert code == "plugin_unavailable", code


def assert_nothing_uncharged(parent: Client, lapse: bool = False) -> None:
    """Every story the backend holds for this family is charged to its daily quota: committed, or still held by a
    reservation. With `lapse` (after an sv-quota-log fault), once every reservation has lapsed: committed alone (a
    lapsed reservation counts as charged; the next decision of the family moves it into `used`)."""
    counter = quota_key(claims_of(parent.access))
    rdb = redis.Redis(db=REDIS_DB)

    def used() -> int:
        return int(rdb.hget(counter, "used") or 0)

    if lapse:
        time.sleep(RESERVATION_TTL + 0.5)  # every reservation taken so far has lapsed
        assert create_story(parent, 99).status_code in (201, 429)  # its decision charges the lapsed ones
    stories = parent.call("GET", "/stories")
    assert stories.status_code == 200, stories.text
    created = len(stories.json()["items"])
    assert created <= 5
    if lapse:
        assert wait_for(lambda: created <= used()), (created, used())  # the log phase settles after the response
        assert used() <= 5  # charged once: a lapsed unit moved from held to used, never counted twice
    else:
        assert created <= used() + held_units(rdb, counter) <= 5 + 6, created


def recovers(stack) -> bool:
    """A new family's first story passes every plugin again (each left its mark). Until then every answer is the
    guard's 503 plugin_unavailable: never a 500, not even for an event that met a late reply on a pooled connection
    (Kong's 500 for that Lua error is the guard's 503 too, sv-edge's header_filter)."""

    def passes() -> bool:
        resp = create_story(new_parent(stack))
        if resp.status_code != 201:
            assert resp.status_code == 503 and resp.json()["code"] == "plugin_unavailable", resp.text
            assert resp.headers["Retry-After"]
        return resp.status_code == 201

    return recovered(passes)


# -- each plugin, each fault -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", GUARDED)
def test_kill_9_under_load_never_passes_a_request_and_recovers(stack, name):
    parent = new_parent(stack)
    with Load(lambda: create_story(parent)) as load:
        for _ in range(3):
            time.sleep(0.3)
            os.kill(server_pid(stack, name), signal.SIGKILL)
        time.sleep(0.5)
    assert load.results, "no request answered during the kills"
    assert_only_closed(load.results)
    assert recovers(stack)
    assert_nothing_uncharged(parent, lapse=name == "sv-quota-log")


@pytest.mark.parametrize("name", GUARDED)
def test_sigstop_past_the_timeout_is_503_then_recovers(stack, name):
    parent = new_parent(stack)
    assert create_story(parent).status_code == 201
    pid = server_pid(stack, name)
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        resp = create_story(parent, 1)
        assert resp.status_code == 503, resp.text  # never a 201, never a 401 for this valid token
        assert resp.json()["code"] == "plugin_unavailable" and resp.headers["Retry-After"]
        assert time.monotonic() - started >= TIMEOUT_S * 0.9  # it waited for the timeout, as Kong does
    finally:
        os.kill(pid, signal.SIGCONT)
    assert recovers(stack)
    assert_nothing_uncharged(parent, lapse=name == "sv-quota-log")


def _respawn(stack, name: str) -> None:
    os.kill(server_pid(stack, name), signal.SIGKILL)
    time.sleep(0.5)
    assert recovers(stack)


@pytest.mark.parametrize("name", GUARDED)
def test_an_exception_in_the_handler_is_503_then_recovers(stack, name):
    """kong-pluginserver (the product's server) answers the event with an error at once and serves the next one: the
    stack recovers by itself. kong-pdk 0.36 (the fallback) never answers an event whose handler raised, and its server
    stays wedged after it (every later event times out): the guard keeps answering 503 until it is restarted."""
    crash, pdk = stack.crash_dir / f"crash-{name}", stack.crash_dir / f"pdk-{name}"
    for server in ("kong-pluginserver", "kong-pdk"):
        if server == "kong-pdk":
            pdk.touch()
            _respawn(stack, name)
        parent = new_parent(stack)
        crash.touch()
        try:
            for n in range(2):
                resp = create_story(parent, n)
                assert resp.status_code == 503, (server, resp.text)
                assert resp.json()["code"] == "plugin_unavailable"
        finally:
            crash.unlink()
        if server == "kong-pdk":
            assert create_story(parent, 2).status_code == 503  # still wedged, still closed
            pdk.unlink()
            _respawn(stack, name)  # back to kong-pluginserver for the next test
        else:
            assert recovers(stack)
        assert_nothing_uncharged(parent, lapse=name == "sv-quota-log")
    assert f"no decision mark from {name}" in stack.output()


def test_a_story_whose_settlement_is_lost_is_charged_after_the_lapse(stack):
    """sv-quota-log fails at log time, after its access mark (its log handler raises: the settle never runs, as when
    its server dies or hangs between access and log). The stories are created; their reservations lapse after
    reservation_ttl and count as charged, so killing or hanging that server never buys a sixth story."""
    parent = new_parent(stack)
    counter = quota_key(claims_of(parent.access))
    rdb = redis.Redis(db=REDIS_DB)
    crash = stack.crash_dir / "crash-log-sv-quota-log"
    needle = "unhandled exception in log: RuntimeError: injected crash at log time"  # the emulator logs each once
    before = stack.output().count(needle)
    crash.touch()
    try:
        for n in range(3):
            assert create_story(parent, n).status_code == 201
        # the log phase runs after the response: keep the switch until all three have failed
        assert wait_for(lambda: stack.output().count(needle) >= before + 3, 10)
    finally:
        crash.unlink()
    assert held_units(rdb, counter) == 3 and int(rdb.hget(counter, "used") or 0) == 0  # held, never settled
    assert_nothing_uncharged(parent, lapse=True)  # a fourth story, then all four charged
    assert int(rdb.hget(counter, "used") or 0) == 4
    assert create_story(parent, 4).status_code == 201
    assert create_story(parent, 5).status_code == 429  # five stories, not eight


# -- the cases -------------------------------------------------------------------------------------------------


def test_a_child_never_creates_a_character_while_sv_rbac_is_killed(stack):
    parent = new_parent(stack)
    _, child = new_child(stack, parent, f"kid{int(time.time() * 1000) % 100000}")
    assert child.call("POST", "/characters", {"name": "Dragon"}).status_code == 403
    with Load(lambda: child.call("POST", "/characters", {"name": "Dragon"})) as load:
        for _ in range(4):
            time.sleep(0.25)
            os.kill(server_pid(stack, "sv-rbac"), signal.SIGKILL)
        time.sleep(0.5)
    statuses = {status for status, _ in load.results}
    assert statuses <= {403, 429, 503}, statuses  # never the 201 real Kong gave
    assert recovered(lambda: child.call("POST", "/characters", {"name": "Dragon"}).status_code == 403)
    assert child.call("POST", "/characters", {"name": "Dragon"}).status_code == 403
    assert recovered(lambda: parent.call("POST", "/characters", {"name": "Dragon"}).status_code == 201)


def test_a_basic_family_never_gets_more_than_five_stories_while_sv_quota_is_killed(stack):
    parent = new_parent(stack)
    with Load(lambda: create_story(parent), threads=6) as load:
        for _ in range(6):
            time.sleep(0.25)
            os.kill(server_pid(stack, "sv-quota"), signal.SIGKILL)
        time.sleep(0.5)
    assert_only_closed(load.results)
    assert sum(1 for status, _ in load.results if status == 201) <= 5
    assert recovers(stack)
    assert_nothing_uncharged(parent)
    assert create_story(parent).status_code == 429  # used up (or still held): no sixth story
