"""Plugin configurations of kong.yml: sv-jwt, sv-rbac, sv-quota[-log], sv-edge and the bundled global plugins.

Each public route repeats sv-jwt's whole config (a route's plugin config replaces the global one), and routes that
differ get their own sv-edge instance. The Lua is the sv-edge plugin (kong-plugins/kong/plugins/sv-edge/).
"""

from __future__ import annotations

import base64
import calendar
import copy
import datetime as dt
import hashlib
import re
from email.utils import formatdate
from typing import Any

from storyverse_contracts.identity import IDENTITY_HEADER_PREFIX, IDENTITY_HEADERS

from storyverse_gateway_config import routes as R
from storyverse_gateway_config.kong.upstreams import base_url
from storyverse_gateway_config.paths import DOCS_HTML, OPENAPI_JSON

# Routes whose sv-quota needs its log phase: sv-quota-log (same config) settles the daily quota's reservations and
# counts failed logins; everywhere else sv-quota runs in access only (docs/architecture.md §9: round trips per request).
LOGIN_ROUTES = ("auth-login", "auth-child-login")

# file-log: Kong's serialize() plus the caller's user id; cookies and any secret sent in a query string are removed
# (Kong itself redacts only the Authorization and Proxy-Authorization request headers). Bodies are never logged.
SECRET_QUERY_ARGS = ("access_token", "refresh_token", "id_token", "token", "code", "client_secret", "password", "pin")
CORS_HEADERS = ["Authorization", "Content-Type", "Accept", "X-Request-Id", "Idempotency-Key"]
CORS_EXPOSED = [
    "X-Request-Id", "RateLimit", "RateLimit-Policy", "Retry-After", "X-Quota-Limit", "X-Quota-Remaining",
    "X-Quota-Reset", "Deprecation", "Sunset", "Link", "WWW-Authenticate",
]  # fmt: skip


def date_of(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


def http_date(value: Any) -> str:
    return formatdate(calendar.timegm(date_of(value).timetuple()), usegmt=True)


def jwt_config(settings: dict[str, Any], anonymous: bool) -> dict[str, Any]:
    """`headers_in_guard`: sv-jwt leaves the upstream identity headers in its identity (kong.ctx.shared) and sv-edge
    sets them, after every decision and before proxy-cache keys on X-User-Id (no plugin-server round trip)."""
    return {**settings["jwt"], "anonymous": anonymous, "headers_in_guard": True, **settings["redis"]}


def quota_config(name: str, limits, by: str, settings: dict[str, Any], daily: bool = False) -> dict[str, Any]:
    """Policies named `<route>-<period>` (their Redis keys and RateLimit headers); the daily quota when `daily`."""
    scale = int(settings["limit_scale"])
    config: dict[str, Any] = {
        "policies": [
            {"name": f"{name}-{period}", "limit": n * scale, "period": period, "by": by} for n, period in limits
        ]
    }
    if daily:
        config["plans"] = [{**p, "daily": p["daily"] * scale} for p in R.PLANS]
        config["quota"] = {"enabled": True, "name": "stories", "scope": "family"}
    if scale != 1:
        config["abuse"] = {"threshold": R.ABUSE_THRESHOLD * scale}
    return {**config, **settings["redis"]}


def rbac_config(ep: R.Endpoint) -> dict[str, Any]:
    if ep.public:
        return {"public": True}
    return {"rules": [{"methods": list(ep.methods), "roles": list(ep.roles)}], **copy.deepcopy(ep.rbac)}


# sv-edge's guard: the decision marks a route requires (kong-plugins/kong/plugins/sv-edge/handler.lua MARKS).
PROTECTED_MARKS = ["sv-jwt", "sv-rbac", "sv-quota"]


def edge_config(**config: Any) -> dict[str, Any]:
    """An sv-edge instance; each carries the access log's redactions (Kong runs the most specific one in log)."""
    return {"name": "sv-edge", "config": {**config, "redact_query_args": list(SECRET_QUERY_ARGS)}}


def required_marks(ep: R.Endpoint) -> list[str]:
    """Every security plugin configured on the route (sv-quota-log where it settles); public routes do without
    sv-jwt's and sv-rbac's (no identity needed), never without sv-quota's (their limits are per client IP)."""
    marks = ["sv-quota"] if ep.public else list(PROTECTED_MARKS)
    if ep.daily_quota or ep.name in LOGIN_ROUTES:
        marks.append("sv-quota-log")
    return marks


def route_edge(ep: R.Endpoint, version: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any] | None:
    """The route's own sv-edge instance, or None where the global one (every protected mark) is right."""
    config: dict[str, Any] = {}
    marks = required_marks(ep)
    if marks != PROTECTED_MARKS:
        config["require"] = marks
    if version["status"] == "deprecated" and ep.versioned:
        config["deprecation"] = deprecation(version, settings)
    if ep.protocol_errors:
        config["pass_upstream_errors"] = True
    if ep.served:
        config["serve"] = served(ep.served)
    if not config:
        return None
    config.setdefault("require", marks)
    return edge_config(**config)


def route_plugins(ep: R.Endpoint, version: dict[str, Any], settings: dict[str, Any]) -> list[dict]:
    """sv-jwt (public routes: anonymous), sv-rbac, sv-quota[, sv-quota-log], extras, and sv-edge where it differs."""
    plugins: list[dict[str, Any]] = []
    if ep.public:
        plugins.append({"name": "sv-jwt", "config": jwt_config(settings, anonymous=True)})
    plugins.append({"name": "sv-rbac", "config": rbac_config(ep)})
    by = "ip" if ep.public else "user"
    quota = quota_config(ep.name, ep.limits, by, settings, ep.daily_quota)
    if not ep.abuse:  # no strikes, and a blocked IP still gets the keys, discovery and its refresh (issue 15.7)
        quota["abuse"] = {"enabled": False}
    plugins.append({"name": "sv-quota", "config": quota})
    if ep.daily_quota or ep.name in LOGIN_ROUTES:
        plugins.append({"name": "sv-quota-log", "config": copy.deepcopy(quota)})
    urls = {name: base_url(name, settings) for name in settings["services"]}
    plugins += [_with_services(copy.deepcopy(p), urls) for p in ep.extra_plugins]
    if ep.cache:
        plugins.append({"name": "proxy-cache", "config": copy.deepcopy(R.CACHE)})
    edge = route_edge(ep, version, settings)
    if edge:
        plugins.append(edge)
    return plugins


def served(kind: str) -> dict[str, Any]:
    """sv-edge `serve`: a docs file baked into the image (docs/openapi/, written by .openapi)."""
    if kind == "openapi":
        return {
            "file": OPENAPI_JSON.name,
            "headers": {"Content-Type": "application/json", "Cache-Control": "public, max-age=300"},
        }
    if kind == "docs":
        return {
            "file": DOCS_HTML.name,
            "headers": {
                "Content-Type": "text/html; charset=utf-8",
                "Cache-Control": "public, max-age=300",
                "Content-Security-Policy": _docs_csp(DOCS_HTML.read_text()),
                "X-Content-Type-Options": "nosniff",
            },
        }
    raise SystemExit(f"unknown served document {kind!r}")


def _docs_csp(html: str) -> str:
    """Only the page's own inline <style> (by hash) may apply; no script, no fetch, no framing."""
    styles = re.findall(r"<style>(.*?)</style>", html, re.S)
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in styles)
    return f"default-src 'none'; style-src {hashes}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"


def file_log_config(settings: dict[str, Any]) -> dict[str, Any]:
    """One JSON line per request: Kong's serialize() (route, service, status, latencies, sizes, ...), plus
    `request_id` (the X-Request-Id) and `user_id`, cookies and query-string secrets removed: sv-edge's log phase
    edits the record (kong.log.set_serialize_value; Kong itself redacts only the Authorization and
    Proxy-Authorization headers; bodies are never in serialize())."""
    return {"path": settings["access_log"], "reopen": False}


def _with_services(value: Any, services: dict[str, str]) -> Any:
    """Replace `<service:NAME>` in extra plugins' strings by that service's base URL from the settings."""
    if isinstance(value, str):
        for name, url in services.items():
            value = value.replace(f"<service:{name}>", url)
        return value
    if isinstance(value, dict):
        return {k: _with_services(v, services) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_services(v, services) for v in value]
    return value


def deprecation(version: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """sv-edge `deprecation`: Deprecation (RFC 9745), Sunset (RFC 8594) and Link headers."""
    docs = f"{settings['docs_url']}/versions#{version['name']}"
    return {
        "at": calendar.timegm(date_of(version["deprecation"]).timetuple()),
        "sunset": http_date(version["sunset"]),
        "link": f'<{docs}>; rel="deprecation", </api/{version["successor"]}>; rel="successor-version"',
    }


def global_edge(settings: dict[str, Any]) -> dict[str, Any]:
    """The global sv-edge: every protected mark, and the identity headers (storyverse_contracts.identity, their
    one definition) stripped from every client request in rewrite, before any plugin or cache key reads them."""
    return edge_config(
        require=list(PROTECTED_MARKS),
        strip_headers=list(IDENTITY_HEADERS.values()),
        strip_header_prefixes=[IDENTITY_HEADER_PREFIX],
    )


def global_plugins(settings: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"name": "sv-request-id", "config": {"header_name": "X-Request-Id", "echo_downstream": True}},
        {
            # request rate, latency, errors and popularity per route, on the Status API (status_listen) /metrics
            "name": "prometheus",
            "config": {"status_code_metrics": True, "latency_metrics": True, "bandwidth_metrics": True},
        },
        {"name": "file-log", "config": file_log_config(settings)},
        {
            "name": "cors",
            "config": {
                "origins": list(settings["cors_origins"]),
                "methods": ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
                "headers": CORS_HEADERS,
                "exposed_headers": CORS_EXPOSED,
                "credentials": False,
                "max_age": 3600,
            },
        },
        {"name": "sv-jwt", "config": jwt_config(settings, anonymous=False)},
        {"name": "sv-rbac", "config": {"rules": [{"roles": ["admin"]}]}},
        {"name": "sv-quota", "config": quota_config("default", [(300, "minute")], "auto", settings)},
        global_edge(settings),
    ]
