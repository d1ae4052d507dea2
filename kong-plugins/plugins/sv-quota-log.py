#!/usr/bin/env python3
"""Entry file for the sv-quota-log plugin server: sv-quota's log phase (reservation settle, 401/403 abuse strikes).

Configured only on the routes that need it (daily-quota and login routes), with the same config as the route's
sv-quota; sv-quota itself runs in access only, so every other route saves the log phase's round trips.
Set SV_QUOTA_LOG_METRICS_PORT to serve this server's counters (settles, strikes, blocks) on
http://$SV_QUOTA_METRICS_HOST:<port>/metrics (host default 127.0.0.1).
"""

import kong_pluginserver.boot  # noqa: F401 - first: cooperative I/O before the plugin modules load
from storyverse_plugins.quota.handler import LogPlugin, Schema, log_priority, version

if __name__ == "__main__":
    import sys

    from kong_pluginserver import start_dedicated_server
    from storyverse_plugins.quota.metrics import serve_from_env

    if "--dump" not in sys.argv:  # Kong's query_cmd only dumps the schema: it must not take the metrics port
        serve_from_env("SV_QUOTA_LOG_METRICS_PORT")
    start_dedicated_server("sv-quota-log", LogPlugin, version, log_priority, Schema)
