"""kong.yml as data: one service per backend with its routes (canonical path, alias, plugins), the CORS preflight
route, retired versions' 410 routes and the global plugins."""

from __future__ import annotations

from typing import Any

from storyverse_gateway_config import routes as R
from storyverse_gateway_config.kong.plugins import (
    date_of,
    edge_config,
    global_plugins,
    http_date,
    jwt_config,
    quota_config,
    route_plugins,
)
from storyverse_gateway_config.kong.upstreams import ca_certificates, kong_services, upstreams
from storyverse_gateway_config.settings import load_settings


def paths_of(ep: R.Endpoint, version: str, alias: bool) -> list[str]:
    if not ep.versioned:
        return [f"~{ep.path}$"]
    return [f"~/api/{version}{ep.path}$"] + ([f"~/api{ep.path}$"] if alias else [])


def route(ep: R.Endpoint, version: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    alias = version["status"] == "current"
    name = f"{version['name']}-{ep.name}" if ep.versioned else ep.name
    tags = ["seed" if ep.seed else "auth-service", "public" if ep.public else "authenticated"]
    tags.append(version["name"] if ep.versioned else "unversioned")
    return {
        "name": name,
        "methods": list(ep.methods),
        "paths": paths_of(ep, version["name"], alias),
        "strip_path": False,
        "tags": tags,
        "plugins": route_plugins(ep, version, settings),
    }


def preflight_route(versions: list[dict[str, Any]], settings: dict[str, Any]) -> dict[str, Any]:
    """OPTIONS on every listed path: in Kong the global `cors` (priority 2000) answers a preflight before sv-jwt;
    an OPTIONS that is not a preflight falls through to sv-edge, which answers 204 and proxies nothing."""
    paths: list[str] = []
    for version in versions:
        if version["status"] != "retired":
            for ep in R.ENDPOINTS:
                for p in paths_of(ep, version["name"], version["status"] == "current"):
                    if p not in paths:
                        paths.append(p)
    return {
        "name": "cors-preflight",
        "methods": ["OPTIONS"],
        "paths": paths,
        "strip_path": False,
        "tags": ["cors", "public"],
        "plugins": [
            {"name": "sv-jwt", "config": jwt_config(settings, anonymous=True)},
            {"name": "sv-rbac", "config": {"public": True}},
            {"name": "sv-quota", "config": quota_config("cors-preflight", [R.PREFLIGHT_LIMIT], "ip", settings)},
            edge_config(require=["sv-quota"], respond=204),
        ],
    }


def retired_route(version: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    sunset = date_of(version["sunset"]).isoformat()
    gone = f"API {version['name']} was retired on {sunset}; use /api/{version['successor']}."
    return {
        "name": f"{version['name']}-retired",
        "paths": [f"~/api/{version['name']}(/.*)?$"],
        "strip_path": False,
        "tags": ["retired", version["name"]],
        "plugins": [
            {"name": "sv-jwt", "config": jwt_config(settings, anonymous=True)},
            {"name": "sv-rbac", "config": {"public": True}},
            {
                "name": "sv-quota",
                "config": quota_config(f"{version['name']}-retired", [(60, "minute")], "ip", settings),
            },
            edge_config(require=["sv-quota"], gone=gone, sunset=http_date(version["sunset"])),
        ],
    }


def service_routes(name: str, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """Every route of one backend: each endpoint per live version; the auth service also carries the CORS preflight
    and the retired versions' 410 routes."""
    routes = []
    for version in settings["versions"]:
        if version["status"] == "retired":
            continue
        for ep in R.ENDPOINTS:
            if ep.service == name and (ep.versioned or version["status"] == "current"):
                routes.append(route(ep, version, settings))
    if name == "auth":
        routes.append(preflight_route(settings["versions"], settings))
        routes += [retired_route(v, settings) for v in settings["versions"] if v["status"] == "retired"]
    return routes


def services(settings: dict[str, Any], ca_ids: list[str]) -> list[dict[str, Any]]:
    out = []
    for name in settings["services"]:
        out += kong_services(name, service_routes(name, settings), settings, ca_ids)
    return out


def build(settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """The declarative config as a dict (what kong.yml holds, minus its comments)."""
    settings = settings or load_settings()
    cas = ca_certificates(settings)
    config: dict[str, Any] = {"_format_version": "3.0"}
    if cas:
        config["ca_certificates"] = cas
    config["services"] = services(settings, [ca["id"] for ca in cas])
    ups = upstreams(settings)
    if ups:
        config["upstreams"] = ups
    config["plugins"] = global_plugins(settings)
    return config
