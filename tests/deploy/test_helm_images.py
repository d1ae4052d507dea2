"""The images and the compose stack can't be built here (no Docker engine): parse them for their invariants, and
check they agree with kong.conf and the chart on paths."""

from __future__ import annotations

import re

import yaml
from helm_support import CHART, REPO

KONG_DOCKERFILE = (REPO / "kong-plugins" / "Dockerfile").read_text()
AUTH_DOCKERFILE = (REPO / "auth-service" / "Dockerfile").read_text()
PYTHON = "/opt/storyverse/venv/bin/python3"
PLUGINS = "/opt/storyverse/plugins"


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", dockerfile)
    lines = [ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln else "") for ln in lines]


def final_stage(dockerfile: str) -> list[tuple[str, str]]:
    steps = instructions(dockerfile)
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def kong_conf() -> dict[str, str]:
    conf = {}
    for line in (REPO / "kong.conf").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            conf[key.strip()] = value.strip()
    return conf


def test_kong_image_is_official_kong_3_9_and_ends_as_kong():
    assert re.search(r"^ARG KONG_IMAGE=kong:3\.9\.\d+$", KONG_DOCKERFILE, re.M)
    stage = final_stage(KONG_DOCKERFILE)
    assert stage[0] == ("FROM", "${KONG_IMAGE}")
    assert [arg for op, arg in stage if op == "USER"][-1] == "kong"


def test_kong_image_paths_match_kong_conf():
    stage = dict((arg.split()[-1], arg) for op, arg in final_stage(KONG_DOCKERFILE) if op == "COPY")
    assert "/opt/storyverse/venv" in stage and "kong-plugins/plugins/" in stage[f"{PLUGINS}/"]
    assert stage["/etc/kong/kong.conf"] == "kong.conf /etc/kong/kong.conf"
    conf = kong_conf()
    assert conf["prefix"] == "/kong_prefix/"
    names = [n.strip() for n in conf["pluginserver_names"].split(",")]
    for name in names:
        key = name.replace("-", "_")
        entry = f"{PYTHON} {PLUGINS}/{name}.py"
        assert (REPO / "kong-plugins" / "plugins" / f"{name}.py").exists()
        assert conf[f"pluginserver_{key}_socket"] == f"/kong_prefix/{name}.sock"
        assert conf[f"pluginserver_{key}_query_cmd"] == f"{entry} --dump"
        if f"pluginserver_{key}_start_cmd" in conf:
            assert conf[f"pluginserver_{key}_start_cmd"].startswith(f"{entry} --no-lua-style -p /kong_prefix/")


def test_chart_serves_every_plugin_entry_file_with_the_image_paths():
    values = yaml.safe_load((CHART / "values.yaml").read_text())["gateway"]
    assert (values["plugins"]["python"], values["plugins"]["directory"]) == (PYTHON, PLUGINS)
    entry_files = {p.stem for p in (REPO / "kong-plugins" / "plugins").glob("sv-*.py")}
    assert entry_files <= set(values["plugins"]["servers"])
    assert values["routerFlavor"] == kong_conf()["router_flavor"]
    assert values["headers"] == kong_conf()["headers"]


def test_auth_image_is_multi_stage_non_root_gunicorn():
    steps = instructions(AUTH_DOCKERFILE)
    assert sum(op == "FROM" for op, _ in steps) >= 2
    stage = final_stage(AUTH_DOCKERFILE)
    assert stage[0][1].endswith("python:3.11-slim-bookworm") or stage[0][1] == "${PYTHON_IMAGE}"
    user = [arg for op, arg in stage if op == "USER"][-1]
    assert user.split(":")[0] not in ("root", "0")
    assert ("CMD", '["gunicorn", "--bind", "0.0.0.0:8080", "wsgi:app"]') in stage
    env = " ".join(arg for op, arg in stage if op == "ENV")
    assert "FLASK_APP=wsgi:app" in env and "MIGRATIONS_DIR=/app/migrations" in env
    assert not any(op == "RUN" and "pip install" in arg for op, arg in stage)  # build tools stay in the build stage


def test_compose_runs_real_kong_with_our_config_and_the_whole_stack():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"kong", "auth", "auth-migrate", "postgres", "redis", "sample-backend"} <= services.keys()
    kong = services["kong"]
    assert kong["build"]["dockerfile"] == "kong-plugins/Dockerfile"
    assert "./kong.yml:/kong/kong.yml:ro" in kong["volumes"]
    assert "./kong.conf:/etc/kong/kong.conf:ro" in kong["volumes"]
    assert kong["environment"]["KONG_DECLARATIVE_CONFIG"] == kong_conf()["declarative_config"]
    assert any(v.endswith(":/kong_prefix") for v in kong["volumes"])
    # kong.yml's upstreams are on 127.0.0.1 (shared with `make run`): they live in Kong's network namespace
    for name in ("auth", "sample-backend"):
        assert services[name]["network_mode"] == "service:kong"
    assert services["auth"]["depends_on"]["auth-migrate"]["condition"] == "service_completed_successfully"
    for name, svc in services.items():
        assert not svc.get("privileged"), name
    for name in ("kong", "auth", "auth-migrate", "sample-backend"):
        assert services[name]["read_only"] is True and services[name]["cap_drop"] == ["ALL"], name


def test_rate_limiting_image_runs_what_the_chart_runs():
    dockerfile = (REPO / "rate-limiting-service" / "Dockerfile").read_text()
    stage = final_stage(dockerfile)
    assert [arg for op, arg in stage if op == "USER"][-1] == "10001:10001"  # the chart's runAsUser
    assert ("CMD", '["gunicorn", "--bind", "0.0.0.0:8080", "storyverse_ratelimit.wsgi:app"]') in stage
    build = " ".join(arg for op, arg in instructions(dockerfile) if op in ("COPY", "RUN"))
    assert "/src/plans /src/process-metrics /src/rate-limiting-service" in build  # the shared packages ship in it
    chart = (CHART / "templates" / "rate-limiting-deployment.yaml").read_text()
    assert "command: [sv-ratelimit, init-db]" in chart and '"storyverse_ratelimit.wsgi:app"' in chart
    kong = " ".join(arg for op, arg in instructions(KONG_DOCKERFILE) if op in ("COPY", "RUN"))
    assert "/src/plans /src/kong-plugins" in kong  # sv-quota imports storyverse_plans
