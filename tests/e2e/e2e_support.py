"""Helpers for the end-to-end tests (imported by name: test directories have no packages)."""

from __future__ import annotations

from pathlib import Path

from kong_emulator.testing import PluginEntry

REPO = Path(__file__).resolve().parents[2]
PLUGINS = REPO / "kong-plugins" / "plugins"


def repo_plugin(name: str) -> PluginEntry:
    """One of our plugins, run from its dedicated-server entry file as kong.conf runs it."""
    return PluginEntry(name, PLUGINS / f"{name}.py")
