"""sv-gateway-config: a deployment's settings file is validated and rendered; a bad one is one line, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from storyverse_gateway_config import cli, load_settings, render
from storyverse_gateway_config.settings import LOCAL

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "production.yaml"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "storyverse_gateway_config", *args], capture_output=True, text=True)


def test_the_production_example_is_valid_and_renders(tmp_path):
    out = tmp_path / "kong.prod.yml"
    assert cli.main(["render", "--settings", str(EXAMPLE), "-o", str(out)]) == 0
    config = yaml.safe_load(out.read_text())
    assert config["_format_version"] == "3.0"
    assert cli.main(["check", "--settings", str(EXAMPLE), "-o", str(out)]) == 0
    out.write_text(out.read_text() + "# edited by hand\n")
    assert cli.main(["check", "--settings", str(EXAMPLE), "-o", str(out)]) == 1


def test_the_example_documents_every_setting():
    """Every top-level setting appears in the example, each preceded by a comment explaining it."""
    lines = EXAMPLE.read_text().splitlines()
    for key in LOCAL:
        at = next((i for i, line in enumerate(lines) if line.startswith(f"{key}:")), None)
        assert at is not None, f"{key} is not in {EXAMPLE.name}"
        assert lines[at - 1].startswith("#"), f"{key} has no comment above it"


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("redis:\n  redis_port: six\n", "redis.redis_port"),
        ("jwt: {issuer: ''}\n", "jwt.issuer"),
        ("services: {billing: 'http://billing'}\n", "services.billing"),
        ("colour: blue\n", "unknown setting 'colour'"),
        ("- a list\n", "must be a mapping"),
        ("services: [\n", "not YAML"),
    ],
)
def test_a_bad_settings_file_is_one_clear_line(tmp_path, content, needle):
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    for command in ("render", "check"):
        result = run(command, "--settings", str(bad))
        assert result.returncode == 2, result
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and needle in lines[0], result.stderr
        assert "Traceback" not in result.stderr


def test_a_missing_settings_file_is_one_line(tmp_path):
    result = run("check", "--settings", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert "nope.yaml" in result.stderr


def test_render_to_stdout_is_the_same_as_the_api():
    result = run("render", "--settings", str(EXAMPLE), "-o", "-")
    assert result.returncode == 0, result.stderr
    assert result.stdout == render(load_settings(EXAMPLE))


def test_output_without_settings_is_refused(tmp_path):
    assert cli.main(["render", "-o", str(tmp_path / "x.yml")]) == 2
    assert not (tmp_path / "x.yml").exists()
