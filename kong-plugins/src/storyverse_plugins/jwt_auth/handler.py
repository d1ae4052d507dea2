"""sv-jwt phase handler: a thin dispatcher over jwt_auth.gate (which decides) — PDK calls live only here.

PDK round trips: happy path 3 (get_headers, set_headers, ctx.shared.set) whether or not the client sent identity
headers (they are cleared in the same set_headers call); 401/400 2 (get_headers, exit); 503 3 (get_headers,
log.err, exit); public route without a token 1, or 2 when it must clear spoofed headers.
With ``headers_in_guard`` (the generated kong.yml): happy path 2 (get_headers, ctx.shared.set): the headers to set
and clear ride in the identity and sv-edge (a Kong Lua plugin) applies them; public route without a token 1 (sv-edge
strips client identity headers in rewrite, before this runs).
Nothing is ever called after ``kong.response.exit``.
"""

from __future__ import annotations

import json
import logging

from storyverse_plugins import PRIORITIES, __version__
from storyverse_plugins.common.decision import Allow, Deny
from storyverse_plugins.common.identity import IDENTITY_CLEAR, IDENTITY_UPSTREAM, SHARED_IDENTITY
from storyverse_plugins.jwt_auth.gate import Verdict, build_gate, internal_error
from storyverse_plugins.jwt_auth.schema import Schema, parse_config

version = __version__
priority = PRIORITIES["sv-jwt"]

__all__ = ["Plugin", "Schema", "priority", "version"]

log = logging.getLogger("storyverse_plugins.jwt_auth")


class Plugin:
    def __init__(self, config: dict) -> None:
        self.cfg = parse_config(config)  # a bad config raises: StartInstance fails and Kong answers 500
        self.gate = build_gate(self.cfg)

    def access(self, kong) -> None:
        try:
            self._access(kong)
        except Exception:
            # The one top-level guard: an uncaught exception stalls Kong 60 s and then lets the request through
            # unauthenticated (fail open), so catch everything and answer 500 ourselves (fail closed).
            log.exception("sv-jwt: unexpected error, answering 500")
            _exit(kong, Verdict(internal_error()))

    def _access(self, kong) -> None:
        # First PDK call: cheap, and before any slow work (JWKS fetch, Redis), since the plugin server serialises
        # event starts until it. One call reads every header.
        headers = kong.request.get_headers(self.cfg.max_request_headers)
        verdict = self.gate.decide(headers or {})
        if verdict.log:
            _log(kong, verdict)
        if isinstance(verdict.decision, Deny):
            return _exit(kong, verdict)
        if self.cfg.headers_in_guard:
            return _allow_deferred(kong, verdict.decision)
        return _allow(kong, verdict.decision)


def _log(kong, verdict: Verdict) -> None:
    if verdict.log_level == "error":
        log.error("sv-jwt: %s", verdict.log)
        kong.log.err("sv-jwt: " + verdict.log)
    else:
        log.info("sv-jwt: %s", verdict.log)


def _allow(kong, allow: Allow) -> None:
    # One call sets the verified identity and clears every client-sent spoof: in Kong,
    # kong.service.request.set_headers({name = {}}) removes the header (ngx.req.set_header with an empty table).
    if allow.upstream_headers:
        kong.service.request.set_headers(allow.upstream_headers)
    for key, value in allow.shared.items():
        kong.ctx.shared.set(key, value)


def _allow_deferred(kong, allow: Allow) -> None:
    # The identity carries the headers; sv-edge's Lua sets/clears them on the upstream request (no round trip).
    # Without an identity (public route, no token) there is nothing to set: sv-edge stripped client copies already.
    identity = allow.shared.get(SHARED_IDENTITY)
    if identity is None:
        return
    identity = dict(identity)
    identity[IDENTITY_UPSTREAM] = {k: v for k, v in allow.upstream_headers.items() if not isinstance(v, list)}
    clear = [k for k, v in allow.upstream_headers.items() if isinstance(v, list)]
    if clear:
        identity[IDENTITY_CLEAR] = clear
    kong.ctx.shared.set(SHARED_IDENTITY, identity)


def _exit(kong, verdict: Verdict) -> None:
    deny = verdict.decision
    body = json.dumps(deny.body(request_id=verdict.request_id), separators=(",", ":"))
    kong.response.exit(deny.status, body, deny.response_headers())
