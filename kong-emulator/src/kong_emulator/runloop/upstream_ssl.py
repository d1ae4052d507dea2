"""TLS towards a service (`protocol: https`), as kong/runloop/upstream_ssl.lua and nginx_kong.lua set it up.

* Verification: `service.tls_verify`; unset, nginx's `proxy_ssl_verify` (kong.conf
  `nginx_proxy_proxy_ssl_verify`, nginx's default off) -- services.lua:45, upstream_ssl.lua:44-51.
* Trust store: the service's `ca_certificates` (upstream_ssl.lua:65-76); a missing one is logged at crit and leaves
  the store unset. Unset, nginx's `proxy_ssl_trusted_certificate` (kong.conf
  `nginx_proxy_proxy_ssl_trusted_certificate`), else none at all: nginx loads no default CA paths for proxying, and
  Kong's `lua_ssl_trusted_certificate` is for Lua cosockets only (nginx_kong_inject.lua:3-4) -- so verification
  without a store fails every handshake (spec/02-integration/05-proxy/18-upstream_tls_spec.lua "turn it on, request
  is blocked": 502).
* Depth: `service.tls_verify_depth`, else `nginx_proxy_proxy_ssl_verify_depth`, else nginx's default 1 -- OpenSSL's
  meaning: at most that many intermediates between the peer certificate and the trust anchor.
* Name: `proxy_ssl_name $upstream_host` with `proxy_ssl_server_name on` (nginx_kong.lua:207-208): the Host header
  sent upstream, port dropped, is both the SNI and the name checked.

A failed handshake is a connect error (nginx's `proxy_next_upstream error`): retried on the next try, else 502.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Mapping
from typing import Any

from kong_emulator.config.errors import ConfigError

log = logging.getLogger("kong_emulator.kong")

NGINX_DEFAULT_DEPTH = 1  # proxy_ssl_verify_depth


class _DepthCheckedObject(ssl.SSLObject):
    """Python's ssl has no verify depth: the verified chain is measured once the handshake is done."""

    def do_handshake(self) -> None:
        super().do_handshake()
        depth = getattr(self.context, "verify_depth", None)
        if depth is None:
            return
        chain = self._sslobj.get_verified_chain()  # peer .. trust anchor
        if len(chain) > depth + 2:
            raise ssl.SSLCertVerificationError(
                1, f"certificate verify failed: certificate chain too long (depth {len(chain) - 2} > {depth})"
            )


class _Context(ssl.SSLContext):
    verify_depth: int | None = None


class UpstreamTLS:
    """One engine's client contexts, by (verify, store, depth); built once, as Kong caches its CA stores."""

    def __init__(self, conf_raw: Mapping[str, str], ca_certificates: Mapping[str, str]) -> None:
        self.raw = conf_raw
        self.cas = ca_certificates
        self._contexts: dict[Any, ssl.SSLContext] = {}
        bundle = (conf_raw.get("nginx_proxy_proxy_ssl_trusted_certificate") or "").strip()
        if bundle and not os.path.isfile(bundle):  # nginx -t refuses to start on a missing file
            raise ConfigError(
                f"nginx_proxy_proxy_ssl_trusted_certificate: no such file: {bundle}", where="in kong.conf"
            )

    def context_for(self, service) -> ssl.SSLContext:
        verify = service.tls_verify
        if verify is None:
            verify = (self.raw.get("nginx_proxy_proxy_ssl_verify") or "off").strip().lower() == "on"
        if not verify:
            return self._cached(("off",), self._unverified)
        depth = service.tls_verify_depth
        if depth is None:
            depth = int(self.raw.get("nginx_proxy_proxy_ssl_verify_depth") or NGINX_DEFAULT_DEPTH)
        ids = tuple(sorted(service.ca_certificates)) if service.ca_certificates else None
        return self._cached(("on", ids, depth), lambda: self._verified(ids, depth))

    def _cached(self, key, build) -> ssl.SSLContext:
        ctx = self._contexts.get(key)
        if ctx is None:
            ctx = self._contexts[key] = build()
        return ctx

    @staticmethod
    def _unverified() -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _verified(self, ids: tuple[str, ...] | None, depth: int) -> ssl.SSLContext:
        ctx = _Context(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, check_hostname; no default CA paths loaded
        ctx.verify_depth = depth
        ctx.sslobject_class = _DepthCheckedObject
        if ids is not None:
            missing = [i for i in ids if i not in self.cas]
            if missing:  # certificate.lua:405 → upstream_ssl.lua:69: the store stays unset
                log.critical("unable to get upstream TLS CA store, err: CA Certificate '%s' does not exist", missing[0])
            else:
                ctx.load_verify_locations(cadata="\n".join(self.cas[i] for i in ids))
        else:
            bundle = (self.raw.get("nginx_proxy_proxy_ssl_trusted_certificate") or "").strip()
            if bundle:
                ctx.load_verify_locations(cafile=bundle)
        return ctx


def ssl_name(host_header: str) -> str:
    """nginx's proxy_ssl_name from `$upstream_host`: the port dropped (an IPv6 literal keeps its brackets off)."""
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def probe_context(conf_raw: Mapping[str, str], active: Mapping[str, Any]) -> ssl.SSLContext | None:
    """The TLS an active `https` probe uses: a cosocket handshake (lua-resty-healthcheck
    `sock:sslhandshake(nil, hostname, https_verify_certificate)`), so Kong's `lua_ssl_trusted_certificate`
    (default `system`, kong_defaults.lua:192) and `lua_ssl_verify_depth` (default 1) -- not the service's CAs."""
    if active.get("type") != "https":
        return None
    if not active.get("https_verify_certificate", True):
        return UpstreamTLS._unverified()
    ctx = _Context(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_depth = int(conf_raw.get("lua_ssl_verify_depth") or 1)
    ctx.sslobject_class = _DepthCheckedObject
    for entry in (e.strip() for e in (conf_raw.get("lua_ssl_trusted_certificate") or "system").split(",")):
        if entry == "system":
            ctx.load_default_certs()
        elif "-----BEGIN" in entry:
            ctx.load_verify_locations(cadata=entry)
        elif entry:
            ctx.load_verify_locations(cafile=entry)
    return ctx
