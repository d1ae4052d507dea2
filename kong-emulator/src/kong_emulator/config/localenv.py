"""Point a kong.conf's paths somewhere else through KONG_* overrides (Kong's own mechanism), for local runs.

A kong.conf written for an image names the image's paths (interpreter, plugin scripts, prefix, error templates).
`relocate` keeps the file as it is and returns the environment variables that rewrite those paths, exactly as an
operator would override them. Which paths move where is the caller's knowledge (a project's stack runner), not the
emulator's.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

RELOCATED_PREFIXES = ("pluginserver_", "error_template_", "lua_package_path")


def env_key(key: str) -> str:
    return "KONG_" + key.upper().replace("-", "_")


def relocate(conf_values: Mapping[str, str], moves: Mapping[str, str]) -> dict[str, str]:
    """KONG_* variables for every ``pluginserver_*`` (but ``pluginserver_names``), ``error_template_*`` and
    ``lua_package_path`` value of ``conf_values`` (a parsed kong.conf) in which a path of ``moves`` (old → new,
    applied in order) occurs."""
    env: dict[str, str] = {}
    for key, value in conf_values.items():
        if key == "pluginserver_names" or not key.startswith(RELOCATED_PREFIXES):
            continue
        moved = value
        for old, new in moves.items():
            moved = moved.replace(old, new)
        if moved != value:
            env[env_key(key)] = moved
    return env


def read_conf_values(path: str | Path) -> dict[str, str]:
    """A minimal `key = value` reader, enough for relocating (conf.py is the full parser)."""
    values: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values
