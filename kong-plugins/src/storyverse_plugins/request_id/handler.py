"""sv-request-id phase handler: a thin dispatcher over request_id.core."""

from __future__ import annotations

import traceback

from storyverse_plugins import PRIORITIES, __version__
from storyverse_plugins.common.identity import SHARED_REQUEST_ID
from storyverse_plugins.request_id.core import choose_request_id
from storyverse_plugins.request_id.schema import Schema, parse_config

version = __version__
priority = PRIORITIES["sv-request-id"]

__all__ = ["Plugin", "Schema", "priority", "version"]


class Plugin:
    def __init__(self, config: dict) -> None:
        self.cfg = parse_config(config)

    def access(self, kong) -> None:
        try:
            self._access(kong)
        except Exception:  # noqa: BLE001 - an uncaught exception stalls Kong for 60 s, then fails open
            kong.log.err("sv-request-id failed: " + traceback.format_exc(limit=3))

    def _access(self, kong) -> None:
        cfg = self.cfg
        request_id = choose_request_id(kong.request.get_header(cfg.header_name), cfg.trust_client)
        kong.service.request.set_header(cfg.header_name, request_id)
        if cfg.echo_downstream:
            kong.response.set_header(cfg.header_name, request_id)
        kong.ctx.shared.set(SHARED_REQUEST_ID, request_id)
