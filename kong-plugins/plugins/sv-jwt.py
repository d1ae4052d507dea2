#!/usr/bin/env python3
"""Entry file for the sv-jwt plugin server (one dedicated server per plugin, as Kong 3.9+ requires)."""

import kong_pluginserver.boot  # noqa: F401 - first: cooperative I/O before the plugin modules load
from storyverse_plugins.jwt_auth.handler import Plugin, Schema, priority, version

if __name__ == "__main__":
    from kong_pluginserver import start_dedicated_server

    start_dedicated_server("sv-jwt", Plugin, version, priority, Schema)
