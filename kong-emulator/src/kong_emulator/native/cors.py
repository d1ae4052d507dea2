"""Kong's bundled ``cors`` plugin, run natively in Python (Kong 3.9).

Kong sources (Kong/kong): `kong/plugins/cors/handler.lua` (PRIORITY 2000; ``access`` + ``header_filter``) and
`kong/plugins/cors/schema.lua`.

* ``access``: only a preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) is handled;
  ``kong.ctx.plugin.skip_response_headers`` is set, and unless ``preflight_continue`` (then the OPTIONS goes to the
  service untouched) Kong answers itself with **200** and an empty body (``kong.response.exit(HTTP_OK)``; Kong/kong
  #4029 chose 200 over 204, #6208 to go back to 204 was not merged): ``Access-Control-Allow-Origin`` (see below),
  ``Access-Control-Allow-Credentials``, ``Access-Control-Allow-Headers`` (``config.headers`` joined with ``,``, else
  the request's ``Access-Control-Request-Headers``), ``Access-Control-Allow-Methods`` (``config.methods`` joined),
  ``Access-Control-Max-Age`` (``tostring(max_age)``), ``Access-Control-Allow-Private-Network`` (``private_network``
  and the request asked for it), ``Vary: Origin`` when the origin list is not ``*``.
* ``header_filter`` (every other response, proxied or produced by Kong or a plugin — a 401 from an auth plugin, a
  proxy-cache hit): nothing without an ``Origin`` unless ``allow_origin_absent`` (default true); then the same
  origin/credentials headers plus ``Access-Control-Expose-Headers``; ``Vary: Origin`` is *added* here.
* Origins: none or ``*`` → ``*``; one plain origin (``^[A-Za-z0-9.:/-]+$``) → sent as is, whatever the request's
  Origin; else each entry is compared with the normalised request origin (scheme://host[:port], default ports
  dropped): an entry with any other character is a regex anchored at both ends (a leading ``^`` dropped, ``$``
  appended), matched against the origin's host when the entry has no ``:``, else against scheme://host[:port];
  a match echoes the normalised origin, no match clears the header. With ``credentials`` and ``*``, the request's
  Origin is echoed instead of ``*`` (ACAC cannot go with ``*``).

Regexes are PCRE in Kong (``ngx.re.find``); here Python ``re`` — the same for the usual ``\\.``/``.*``/classes.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from kong_emulator import KONG_VERSION
from kong_emulator.config.entities import Plugin, PluginInfo
from kong_emulator.runloop.context import Headers

NAME = "cors"
PRIORITY = 2000
METHODS = ("GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE", "CONNECT")
_PLAIN = re.compile(r"^[A-Za-z0-9.:/-]+$")
_NOT_PLAIN = re.compile(r"[^A-Za-z0-9.:/-]")


def _asterisk_or_regex(value: Any) -> str | None:
    if value == "*":
        return None
    try:
        re.compile(value)
        return None
    except (re.error, TypeError):
        return f"'{value}' is not a valid regex"


def schema() -> dict[str, Any]:
    """``kong/plugins/cors/schema.lua`` (3.9): ``consumer`` must be null (``typedefs.no_consumer``)."""
    return {
        "name": NAME,
        "fields": [
            {"consumer": {"type": "foreign", "reference": "consumers", "eq": None}},
            {
                "config": {
                    "type": "record",
                    "fields": [
                        {
                            "origins": {
                                "type": "array",
                                "elements": {"type": "string", "custom_validator": _asterisk_or_regex},
                            }
                        },
                        {"headers": {"type": "array", "elements": {"type": "string"}}},
                        {"exposed_headers": {"type": "array", "elements": {"type": "string"}}},
                        {
                            "methods": {
                                "type": "array",
                                "default": list(METHODS),
                                "elements": {"type": "string", "one_of": list(METHODS)},
                            }
                        },
                        {"max_age": {"type": "number"}},
                        {"credentials": {"type": "boolean", "required": True, "default": False}},
                        {"private_network": {"type": "boolean", "required": True, "default": False}},
                        {"preflight_continue": {"type": "boolean", "required": True, "default": False}},
                        {"allow_origin_absent": {"type": "boolean", "required": True, "default": True}},
                    ],
                }
            },
        ],
    }


def info() -> PluginInfo:
    return PluginInfo(
        name=NAME, version=KONG_VERSION, priority=PRIORITY, phases=("access", "header_filter"), schema=schema()
    )


def normalize_origin(domain: str) -> dict[str, str]:
    """``normalize_origin`` (LuaSocket ``url.parse``): scheme://host[:port] without the scheme's default port."""
    parts = urlsplit(domain)
    if not parts.netloc:
        return {"domain": domain, "host": domain}
    netloc = parts.netloc.rsplit("@", 1)[-1]
    host, port = netloc, None
    if netloc.startswith("["):
        end = netloc.find("]")
        host, rest = netloc[: end + 1], netloc[end + 1 :]
        port = rest[1:] if rest.startswith(":") else None
    elif ":" in netloc:
        host, port = netloc.rsplit(":", 1)
    if (parts.scheme == "http" and port == "80") or (parts.scheme == "https" and port == "443"):
        port = None
    scheme = f"{parts.scheme}://" if parts.scheme else ""
    return {"domain": f"{scheme}{host}{':' + port if port else ''}", "host": host}


def _plugin_ctx(ctx, plugin: Plugin) -> dict[str, Any]:
    """``kong.ctx.plugin``: per request and plugin name, shared by its instances (Kong keys it by the handler,
    kong/init.lua:268, kong/pdk/ctx.lua:128-140)."""
    return ctx.__dict__.setdefault("_native_plugin_ctx", {}).setdefault(plugin.name, {})


class Cors:
    """The native handler the `NativeRunner` calls."""

    runs_as = "natively in Python (kong_emulator.native.cors)"

    def __init__(self) -> None:
        self.name = NAME
        self.info = info()
        self._domains: dict[int, tuple[dict, list[dict]]] = {}

    def startup_notes(self, plugin: Plugin) -> list[str]:
        return []

    # -- phases -------------------------------------------------------------------------------------------------

    def run_phase(self, plugin: Plugin, phase: str, ctx, worker: int) -> None:
        if phase == "access":
            self.access(plugin, ctx)
        elif phase in ("header_filter", "response"):  # "response": the whole-response step of direct callers
            self.header_filter(plugin, ctx, ctx.response.headers)

    def exit_filter(self, plugin: Plugin, ctx, headers: Headers, exit_) -> None:
        """Kong runs ``header_filter`` on responses Kong or a plugin produced too."""
        self.header_filter(plugin, ctx, headers)

    def access(self, plugin: Plugin, ctx) -> None:
        conf = plugin.config
        req = ctx.request.headers
        req_origin = req.get("Origin")
        if ctx.request.method != "OPTIONS" or req_origin is None or req.get("Access-Control-Request-Method") is None:
            return
        _plugin_ctx(ctx, plugin)["skip_response_headers"] = True
        if conf.get("preflight_continue"):
            return
        out = ctx.response.headers
        allow_all = self._configure_origin(conf, out, False, req_origin)
        self._configure_credentials(conf, out, allow_all, False, req_origin)
        if conf.get("headers"):
            out.set("Access-Control-Allow-Headers", ",".join(conf["headers"]))
        else:
            acrh = req.get("Access-Control-Request-Headers")
            if acrh is not None:
                out.set("Access-Control-Allow-Headers", acrh)
            else:
                out.clear("Access-Control-Allow-Headers")
        methods = ",".join(conf["methods"]) if conf.get("methods") is not None else ",".join(METHODS)
        out.set("Access-Control-Allow-Methods", methods)
        if conf.get("max_age") is not None:
            out.set("Access-Control-Max-Age", _tostring(conf["max_age"]))
        if conf.get("private_network") and req.get("Access-Control-Request-Private-Network") == "true":
            out.set("Access-Control-Allow-Private-Network", "true")
        from kong_emulator.runloop.context import ExitResponse

        ctx.exit = ExitResponse(200, b"", Headers([("Content-Length", "0")]), source="exit")
        ctx.response.source = "exit"

    def header_filter(self, plugin: Plugin, ctx, out: Headers) -> None:
        if _plugin_ctx(ctx, plugin).get("skip_response_headers"):
            return
        conf = plugin.config
        req_origin = ctx.request.headers.get("origin")
        if req_origin is None and not conf.get("allow_origin_absent"):
            return
        allow_all = self._configure_origin(conf, out, True, req_origin)
        self._configure_credentials(conf, out, allow_all, True, req_origin)
        if conf.get("exposed_headers"):
            out.set("Access-Control-Expose-Headers", ",".join(conf["exposed_headers"]))

    # -- handler.lua helpers ------------------------------------------------------------------------------------

    @staticmethod
    def _vary(out: Headers, header_filter: bool) -> None:
        if header_filter:
            out.add("vary", "Origin")
        else:
            out.set("vary", "Origin")

    def _cached_domains(self, conf: dict) -> list[dict] | None:
        """``config_cache[conf]``; None when an entry is ``*`` (then ACAO is ``*``)."""
        cached = self._domains.get(id(conf))
        if cached is not None and cached[0] is conf:
            return cached[1]
        domains: list[dict] = []
        for entry in conf["origins"]:
            if entry == "*":
                return None
            if _NOT_PLAIN.search(entry):
                regex = entry if entry.endswith("$") else entry + "$"
                regex = regex[1:] if regex.startswith("^") else regex
                domain: dict[str, Any] = {"regex": re.compile(regex)}
            else:
                domain = dict(normalize_origin(entry))
            domain["by_host"] = ":" not in entry
            domains.append(domain)
        self._domains[id(conf)] = (conf, domains)
        return domains

    def _configure_origin(self, conf: dict, out: Headers, header_filter: bool, req_origin: str | None) -> bool:
        origins = conf.get("origins") or []
        if not origins or (len(origins) == 1 and origins[0] == "*"):
            out.set("Access-Control-Allow-Origin", "*")
            return True
        self._vary(out, header_filter)  # "always set Vary header (it can be used for calculating cache key)"
        if len(origins) == 1 and _PLAIN.match(origins[0]):
            out.set("Access-Control-Allow-Origin", origins[0])
            return False
        if req_origin is not None:
            domains = self._cached_domains(conf)
            if domains is None:
                out.set("Access-Control-Allow-Origin", "*")
                return True
            normalized = normalize_origin(req_origin)
            for domain in domains:
                if "regex" in domain:
                    subject = normalized["host"] if domain["by_host"] else normalized["domain"]
                    found = domain["regex"].match(subject) is not None
                else:
                    found = normalized["domain"] == domain["domain"]
                if found:
                    out.set("Access-Control-Allow-Origin", normalized["domain"])
                    return False
        out.clear("Access-Control-Allow-Origin")
        return False

    def _configure_credentials(
        self, conf: dict, out: Headers, allow_all: bool, header_filter: bool, req_origin: str | None
    ) -> None:
        if not conf.get("credentials"):
            return
        if not allow_all:
            out.set("Access-Control-Allow-Credentials", "true")
            return
        if req_origin is not None:  # ACAC cannot be 'true' with ACAO '*'
            self._vary(out, header_filter)
            out.set("Access-Control-Allow-Origin", req_origin)
            out.set("Access-Control-Allow-Credentials", "true")


def _tostring(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
