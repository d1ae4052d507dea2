"""Point kong.conf's production paths at a local checkout, through KONG_* overrides (Kong's own mechanism).

kong.conf names the image's paths (`/opt/storyverse/venv/bin/python3`, `/opt/storyverse/plugins/`,
`/opt/storyverse/error-templates/`, `/kong_prefix/`). Locally `make run` and the tests keep the file as it is and
override each plugin server's socket, start and query command and each `error_template_*` file, exactly as an
operator would with environment variables.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

IMAGE_PYTHON = "/opt/storyverse/venv/bin/python3"
IMAGE_PLUGINS = "/opt/storyverse/plugins/"
IMAGE_PREFIX = "/kong_prefix/"
IMAGE_ERROR_TEMPLATES = "/opt/storyverse/error-templates/"
IMAGE_LUA = "/opt/storyverse/lua/"  # custom Lua plugins (kong/plugins/<name>/); locally kong-plugins/


def env_key(key: str) -> str:
    return "KONG_" + key.upper().replace("-", "_")


def local_overrides(
    conf_values: dict[str, str],
    prefix: str | Path,
    plugins_dir: str | Path,
    python: str = sys.executable,
    templates_dir: str | Path | None = None,
) -> dict[str, str]:
    """KONG_* variables that relocate every pluginserver_* path of `conf_values` (a parsed kong.conf), and every
    `error_template_*` file under the image's error-templates directory when `templates_dir` is given."""
    prefix = str(Path(prefix).resolve()) + "/"
    plugins_dir = str(Path(plugins_dir).resolve()) + "/"
    env = {"KONG_PREFIX": prefix}
    if "lua_package_path" in conf_values:
        local_lua = str(Path(plugins_dir).resolve().parent) + "/"  # kong-plugins/plugins/ -> kong-plugins/
        env["KONG_LUA_PACKAGE_PATH"] = conf_values["lua_package_path"].replace(IMAGE_LUA, local_lua)
    for key, value in conf_values.items():
        if key.startswith("pluginserver_") and key != "pluginserver_names":
            local = value.replace(IMAGE_PYTHON, python).replace(IMAGE_PLUGINS, plugins_dir)
            env[env_key(key)] = local.replace(IMAGE_PREFIX, prefix)
        elif key.startswith("error_template_") and templates_dir is not None:
            if value.startswith(IMAGE_ERROR_TEMPLATES):
                local_dir = str(Path(templates_dir).resolve()) + "/"
                env[env_key(key)] = local_dir + value[len(IMAGE_ERROR_TEMPLATES) :]
    return env


def read_conf_values(path: str | Path) -> dict[str, str]:
    """A minimal `key = value` reader, enough for the relocation above (conf.py is the full parser)."""
    values: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def local_environ(repo: str | Path, prefix: str | Path, **extra: str) -> dict[str, str]:
    """os.environ plus the overrides for running this repo's kong.conf locally."""
    repo = Path(repo)
    env = dict(os.environ)
    plugins = repo / "kong-plugins"
    conf_values = read_conf_values(repo / "kong.conf")
    env.update(local_overrides(conf_values, prefix, plugins / "plugins", templates_dir=plugins / "error-templates"))
    env.update(extra)
    return env
