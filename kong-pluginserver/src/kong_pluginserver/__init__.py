"""kong_pluginserver: a Kong 3.x plugin server for Python plugin classes written against kong-pdk's API.

An entry file calls ``start_dedicated_server(name, Plugin, version, priority, Schema)`` exactly as with
``kong_pdk.cli``; Kong's start and query commands (``-p PREFIX``, ``--no-lua-style``, ``--dump``) are unchanged.
``SV_PLUGIN_SERVER=kong-pdk`` in the server's environment selects kong-pdk's own server instead (the fallback).
"""

from kong_pluginserver.cli import SERVER_ENV, start_dedicated_server

__all__ = ["SERVER_ENV", "start_dedicated_server"]
