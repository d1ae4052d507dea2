"""``import kong_pluginserver.boot``, first in every entry file: gevent's monkey-patching before plugin modules load.

kong_pluginserver runs plugin code in greenlets on one hub, so blocking I/O must be cooperative: socket, ssl,
select, time.sleep, DNS and threading (locks included) are patched here, before redis, urllib3 or a plugin module
creates a socket, an SSL context or a module-level lock. With ``SV_PLUGIN_SERVER=kong-pdk`` (the fallback) nothing
is patched: kong-pdk's server runs as it always does. Nothing is patched either when the importer is not the
program being run (a test importing an entry file to read its Schema): `start_dedicated_server` patches then.
"""

from __future__ import annotations

import os
import sys

FALLBACK = "kong-pdk"


def patch() -> bool:
    """Patch once (idempotent); False when the fallback server is selected."""
    if os.environ.get("SV_PLUGIN_SERVER", "").strip() == FALLBACK:
        return False
    from gevent import monkey

    if not monkey.is_module_patched("socket"):
        monkey.patch_all()
    return True


def _imported_by_main() -> bool:
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if name != __name__ and not name.startswith(("importlib", "_frozen_importlib")):
            return name == "__main__"
        frame = frame.f_back
    return False


if _imported_by_main():
    patch()
