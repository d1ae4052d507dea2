#!/usr/bin/env python3
"""Entry file for the sv-quota plugin server (one dedicated server per plugin, as Kong 3.9+ requires).

Set SV_QUOTA_METRICS_PORT to serve the plugin's Prometheus counters on http://127.0.0.1:<port>/metrics.
"""

from storyverse_plugins.quota.handler import Plugin, Schema, priority, version

if __name__ == "__main__":
    from kong_pdk.cli import start_dedicated_server
    from storyverse_plugins.quota.metrics import serve_from_env

    serve_from_env()
    start_dedicated_server("sv-quota", Plugin, version, priority, Schema)
