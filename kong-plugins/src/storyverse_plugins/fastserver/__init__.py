"""A faster kong-pdk-compatible plugin server: same MessagePack-RPC protocol, same plugin classes, one loop.

Switch an entry file by importing ``start_dedicated_server`` from here instead of ``kong_pdk.cli``, or keep the
entry file and start it through ``python -m storyverse_plugins.fastserver <entry.py> [kong-pdk flags]``.
"""

from storyverse_plugins.fastserver.cli import start_dedicated_server

__all__ = ["start_dedicated_server"]
