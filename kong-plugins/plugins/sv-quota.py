#!/usr/bin/env python3
"""Entry file for the sv-quota plugin server (one dedicated server per plugin, as Kong 3.9+ requires).

Set SV_QUOTA_METRICS_PORT to serve the plugin's Prometheus counters on http://$SV_QUOTA_METRICS_HOST:<port>/metrics
(host default 127.0.0.1; the Helm chart sets 0.0.0.0 so Prometheus can scrape the pod).
"""

import kong_pluginserver.boot  # noqa: F401 - first: cooperative I/O before the plugin modules load
from storyverse_plugins.quota.handler import Plugin, Schema, priority, version

if __name__ == "__main__":
    import sys

    from kong_pluginserver import start_dedicated_server
    from storyverse_plugins.quota.metrics import serve_from_env

    if "--dump" not in sys.argv:  # Kong's query_cmd only dumps the schema: it must not take the metrics port
        serve_from_env()
    start_dedicated_server("sv-quota", Plugin, version, priority, Schema)
