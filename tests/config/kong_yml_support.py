"""Helpers for the kong.yml tests: the generator, the plugins' own infos (their query commands), the loaded config.

Imported by name (test directories have no packages). The plugin infos come from running each entry file's
`--dump` exactly as Kong does at start (kong.conf's `pluginserver_*_query_cmd`, relocated to this checkout with the
KONG_* overrides of `kong_emulator.config.localenv`), plus the bundled plugins the emulator runs natively and the
custom Lua plugin sv-edge (its handler.lua/schema.lua found on kong.conf's lua_package_path, as Kong loads it).
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import sys
import tempfile
from pathlib import Path

from kong_emulator.app import _enabled_plugins
from kong_emulator.config import conf as conf_mod
from kong_emulator.config.declarative import BUNDLED_PLUGINS, load_declarative
from kong_emulator.config.entities import DeclarativeConfig, PluginInfo
from kong_emulator.native import lua_plugins, with_native_infos
from kong_emulator.plugin_servers.pluginserver import PluginServers

REPO = Path(__file__).resolve().parents[2]
KONG_YML = REPO / "kong.yml"
KONG_CONF = REPO / "kong.conf"
OUR_PLUGINS = ("sv-request-id", "sv-jwt", "sv-rbac", "sv-quota", "sv-quota-log", "sv-expand")
# Bundled Lua plugins kong.yml configures that the emulator cannot run (it would report them at start): none.
EXPECTED_UNSUPPORTED: list[str] = []  # cors, proxy-cache, file-log, prometheus run natively in the emulator


def generator():
    """The kong.yml renderer (gateway-config: `load_settings`, `render`)."""
    import storyverse_gateway_config

    return storyverse_gateway_config


@functools.cache
def kong_conf():
    """The repository's kong.conf as the emulator reads it locally (plugin servers relocated to this checkout)."""
    prefix = tempfile.mkdtemp(prefix="svconf", dir="/tmp")
    return conf_mod.load_kong_conf(str(KONG_CONF), stack_runner().local_environ(REPO, prefix))


def stack_runner():
    """scripts/run_stack.py as a module (it knows the image paths kong.conf names)."""
    scripts = str(REPO / "scripts")
    if scripts not in sys.path:
        sys.path.insert(0, scripts)
    return importlib.import_module("run_stack")


@functools.cache
def plugin_infos() -> dict[str, PluginInfo]:
    """What each plugin server tells Kong (its --dump), validated like Kong, plus the natively-run bundled ones."""
    conf = kong_conf()
    infos = with_native_infos(asyncio.run(PluginServers(conf.pluginservers).query_all()))
    infos.update(lua_plugins.load_infos(conf.plugins, lua_plugins.package_path(conf.raw, conf.prefix)))
    return infos


def load(text_or_path: str | Path = KONG_YML) -> DeclarativeConfig:
    """Validate and resolve a kong.yml like Kong (and the emulator) at start; raises ConfigError."""
    infos = plugin_infos()
    enabled = _enabled_plugins(kong_conf().plugins, infos)
    return load_declarative(text_or_path, infos, enabled, set(BUNDLED_PLUGINS))


def edge_conf(plugin_names) -> dict[str, str]:
    """kong.conf lines an EmulatorProcess needs for the generated kong.yml: sv-edge enabled and found where this
    checkout keeps it (the image's lua_package_path, relocated)."""
    return {
        "plugins": ",".join(["bundled", "sv-edge", *plugin_names]),
        "lua_package_path": f"{REPO / 'kong-plugins'}/?.lua;;",
    }
