"""``python -m kong_pluginserver ENTRY.py [flags]``: run an entry file written for kong-pdk on this server.

The entry file's ``from kong_pdk.cli import start_dedicated_server`` (inside ``if __name__ == "__main__"``) picks up
this package's drop-in, because ``kong_pdk.cli.start_dedicated_server`` is replaced before the file runs.
"""

from __future__ import annotations

import runpy
import sys


def main() -> None:
    if len(sys.argv) < 2 or not sys.argv[1].endswith(".py"):
        sys.stderr.write("usage: python -m kong_pluginserver ENTRY.py [kong-pdk dedicated server flags]\n")
        raise SystemExit(2)
    import kong_pdk.cli

    import kong_pluginserver.boot  # noqa: F401 - cooperative I/O before the entry file's imports
    from kong_pluginserver.cli import start_dedicated_server

    if not hasattr(kong_pdk.cli, "_kong_pdk_start_dedicated_server"):  # the fallback (SV_PLUGIN_SERVER) calls it
        kong_pdk.cli._kong_pdk_start_dedicated_server = kong_pdk.cli.start_dedicated_server
    kong_pdk.cli.start_dedicated_server = start_dedicated_server
    entry = sys.argv[1]
    sys.argv = sys.argv[1:]
    sys.path.insert(0, entry.rsplit("/", 1)[0] if "/" in entry else ".")
    runpy.run_path(entry, run_name="__main__")


if __name__ == "__main__":
    main()
