"""Start-up through the real CLI (`python -m kong_emulator -c kong.conf`): refused configurations exit 1 with one
message naming the entity and field and no Python traceback; KONG_* variables beat kong.conf; bundled Lua plugins the
emulator cannot run are reported loudly.

The bad kong.yml files are tests/fixtures/bad (one per error kind, first line `# expect: <message>`); the ones that
configure `sv-rbac` are checked against a synthetic schema in test_declarative.py and are left out here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from kong_emulator.testing import EmulatorProcess, PluginEntry, free_port, wait_port
from proxy_support import PROBE, no_traceback

BAD_DIR = Path(__file__).parent.parent / "fixtures" / "bad"
BAD = sorted(p for p in BAD_DIR.glob("*.yml") if "sv-rbac" not in p.read_text())
MINIMAL = """
_format_version: "3.0"
services:
- name: svc
  url: http://127.0.0.1:9/
  routes:
  - {name: r, paths: ["/r"]}
"""


def expected(path: Path) -> str:
    return path.read_text().splitlines()[0].removeprefix("# expect: ")


def run_all(cases: dict[str, EmulatorProcess]) -> dict[str, tuple[int, str]]:
    """Start every case at once (they all fail fast), then collect exit codes and output."""
    for gw in cases.values():
        gw.start(wait=False)
    out = {}
    for name, gw in cases.items():
        try:
            out[name] = (gw.wait_exit(120), gw.output())  # 28 starts at once on a shared 2-core machine
        finally:
            gw.stop()
    return out


@pytest.fixture(scope="module")
def refused():
    cases = {p.stem: EmulatorProcess(p.read_text()) for p in BAD}
    cases["probe_config_wrong_type"] = EmulatorProcess(
        MINIMAL + "plugins:\n- {name: t-proxy-probe, config: {log_delay: soon}}\n", [PROBE]
    )
    cases["query_cmd_script_missing"] = EmulatorProcess(MINIMAL, [PluginEntry("t-gone", Path("/nonexistent/gone.py"))])
    cases["query_cmd_not_executable"] = EmulatorProcess(
        MINIMAL, [PROBE], conf_extra={"pluginserver_t_proxy_probe_query_cmd": "/nonexistent/bin/t-proxy-probe --dump"}
    )
    return run_all(cases)


def test_every_non_plugin_error_kind_is_covered():
    assert len(BAD) >= 20


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_kong_yml_is_refused_by_the_cli(refused, path):
    code, output = refused[path.stem]
    assert code == 1, output
    assert expected(path) in output, output
    assert no_traceback(output), output


def test_plugin_config_failing_its_schema_is_refused(refused):
    code, output = refused["probe_config_wrong_type"]
    assert code == 1
    assert "in 'plugins' entity 't-proxy-probe' (plugins[0]): field 'config.log_delay'" in output, output
    assert no_traceback(output), output


@pytest.mark.parametrize(
    ("case", "cause"),
    [
        ("query_cmd_script_missing", "can't open file '/nonexistent/gone.py'"),
        ("query_cmd_not_executable", "/nonexistent/bin/t-proxy-probe: not found"),
    ],
)
def test_a_failing_plugin_query_command_stops_the_start(refused, case, cause):
    """As Kong (kong/runloop/plugin_servers/process.lua query_external_plugin_info): the command's own stderr
    names what is missing, then "failed decoding plugin info: ..." on its empty stdout, and the start fails."""
    code, output = refused[case]
    assert code == 1, output
    assert cause in output, output
    critical = [line for line in output.splitlines() if "[CRITICAL]" in line]
    assert len(critical) == 1 and "failed decoding plugin info" in critical[0], output
    assert no_traceback(output), output


def test_kong_env_variables_beat_kong_conf():
    file_port, env_port = free_port(), free_port()
    gw = EmulatorProcess(MINIMAL, port=file_port, env={"KONG_PROXY_LISTEN": f"127.0.0.1:{env_port}"})
    gw.start(wait=False)
    try:
        wait_port(env_port, proc=gw.proc)
        resp = requests.get(f"http://127.0.0.1:{env_port}/nowhere", timeout=10)
        assert resp.status_code == 404 and resp.json()["message"] == "no Route matched with those values"
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{file_port}/nowhere", timeout=2)
    finally:
        gw.stop()


def test_bundled_lua_plugin_in_kong_yml_is_reported_loudly():
    yml = MINIMAL + "plugins:\n- {name: rate-limiting, route: r, config: {minute: 5, policy: local}}\n"
    with EmulatorProcess(yml) as gw:
        assert requests.get(gw.url + "/nowhere", timeout=10).status_code == 404  # it did start
        loud = [line for line in gw.output().splitlines() if "rate-limiting" in line]
        assert loud, gw.output()
        assert any("[ERROR]" in line or "[WARNING]" in line for line in loud), loud
