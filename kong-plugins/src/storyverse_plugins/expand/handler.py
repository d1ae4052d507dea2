"""sv-expand phase handlers: validate `expand` in access, compose the story in response.

Why the `response` phase: the story itself goes through Kong's normal proxy path (service URL, retries, timeouts,
logging), after sv-jwt, sv-rbac and sv-quota have run in access, so aggregation can never bypass them; the plugin only
adds the referenced resources, fetched with the identity headers the story's upstream received (the services are
per user and check ownership themselves). A `response` handler turns on buffered proxying for the routes it is on:
put it on the story-item route only.

PDK round trips (each one is a plugin-server round trip), cumulative:
  access    request.get_query_arg(expand)                                        1 on every request
            bad value: + ctx.shared.get(request id) + response.exit(400)         3
  response  request.get_query_arg(expand), a cheap first call (events are
            serialised until their first PDK call)                               1 without expand
            + service.response.get_status                                        2 not a 2xx
            + service.response.get_headers                                       3 not uncompressed JSON
            + service.response.get_raw_body                                      4 no record in the body
            + request.get_headers (only when there are ids to fetch)             5
            + response.exit(composed story), terminal: no reply, nothing after   6 composed
Aggregation is not a security control, so it degrades instead of failing closed: any error in the plugin lets the
story go out as the service sent it (logged), and failed fetches are marked in the body.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from storyverse_plugins import PRIORITIES, __version__
from storyverse_plugins.common.decision import Deny
from storyverse_plugins.common.identity import SHARED_REQUEST_ID
from storyverse_plugins.expand import core
from storyverse_plugins.expand.fetch import Fetcher
from storyverse_plugins.expand.schema import Config, Schema, parse_config

# After sv-quota (910): only authenticated, authorized, metered requests are validated or expanded; next to Kong's
# response-transformer band (800).
PRIORITY = 810

version = __version__
priority = PRIORITIES.get("sv-expand", PRIORITY)

__all__ = ["Plugin", "Schema", "priority", "version"]

log = logging.getLogger("storyverse_plugins.expand")


class Plugin:
    def __init__(self, config: dict, fetcher: Fetcher | None = None) -> None:
        self.cfg: Config = parse_config(config)  # a bad config raises: StartInstance fails and Kong answers 500
        self.fetcher = fetcher or Fetcher(self.cfg)

    def access(self, kong) -> None:
        try:
            self._access(kong)
        except Exception:  # an uncaught exception stalls Kong 60 s; validation is no security control: go on
            log.exception("sv-expand: expand validation failed; the request goes on")

    def _access(self, kong) -> None:
        try:
            core.requested(kong.request.get_query_arg(self.cfg.query_arg), self.cfg)
        except core.BadExpand as exc:
            deny = Deny(400, "invalid_expand", str(exc))
            body = deny.body(request_id=_str(kong.ctx.shared.get(SHARED_REQUEST_ID)))
            kong.response.exit(deny.status, _dumps(body), deny.response_headers())

    def response(self, kong) -> None:
        try:
            self._response(kong)
        except Exception:  # degrade: the story goes out un-expanded rather than failing the response
            log.exception("sv-expand: composition failed; the story goes out un-expanded")

    def _response(self, kong) -> None:
        cfg = self.cfg
        try:
            names = core.requested(kong.request.get_query_arg(cfg.query_arg), cfg)
        except core.BadExpand:
            return  # access answered 400 already; reaching here means it could not: don't expand
        if not names:
            return
        status = kong.service.response.get_status()
        if not core.success(status):
            return
        upstream_headers = kong.service.response.get_headers()
        if not core.composable(upstream_headers):
            return
        body = core.parse_json(kong.service.response.get_raw_body(), cfg.max_body_bytes)
        record = core.unwrap(body, cfg.envelope_field)
        if record is None:
            return
        parts = core.plan(record, names, cfg)
        urls = core.fetch_list(parts)
        headers = core.forwarded(kong.request.get_headers(), cfg.forward_headers) if urls else {}
        composed, complete = core.compose(body, record, parts, self.fetcher.fetch_all(urls, headers), cfg)
        text = _dumps(composed)
        kong.response.exit(status, text, core.response_headers(upstream_headers, text.encode(), complete))


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
