"""kong.yml (format 3.0) → a validated, resolved DeclarativeConfig, checked like Kong 3.x's declarative loader.

Sources (Kong/kong): `kong/db/schema/others/declarative_config.lua` (format versions, nesting, references,
uniqueness), `kong/db/schema/entities/{services,routes,consumers,upstreams,targets,plugins}.lua`,
`routes_subschemas.lua`, `typedefs.lua` (paths, hosts, methods, headers),
`kong/db/declarative/migrations/route_path.lua`
(1.1/2.1 files are accepted and their route paths migrated, as Kong 3.x does). Field checks use `plugin_schema`.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

from kong_emulator.config import entity_schemas as S
from kong_emulator.config.ca_certificates import load_ca_certificates
from kong_emulator.config.entities import (
    Consumer,
    DeclarativeConfig,
    Plugin,
    PluginInfo,
    Route,
    Service,
    Target,
    Upstream,
)
from kong_emulator.config.errors import ConfigError, entity_where
from kong_emulator.config.plugin_schema import normalize_config, normalize_record
from kong_emulator.router.traditional import normalize_path

BUNDLED_PLUGINS = S.BUNDLED_PLUGINS
FORMAT_VERSIONS = ("1.1", "2.1", "3.0")
ID_NAMESPACE = uuid.UUID("5b0b6a8e-7f3c-5d1e-9a51-6b6f6e672d65")  # the emulator's own: ids are stable across restarts
TOP = "in declarative config"
NESTED = {
    "services": ("routes", "plugins"),
    "routes": ("plugins",),
    "consumers": ("plugins",),
    "upstreams": ("targets",),
}
PARENT_KEY = {"services": "service", "routes": "route", "consumers": "consumer", "upstreams": "upstream"}


def load_declarative(
    text_or_path: str | os.PathLike[str],
    plugin_infos: Mapping[str, PluginInfo],
    enabled_plugins: set[str],
    bundled_names: set[str],
    *,
    router_flavor: str = "traditional_compatible",
) -> DeclarativeConfig:
    """Parse, validate and resolve a kong.yml given as text or as a path; raise ConfigError on the first problem."""
    data = parse_yaml(_read(text_or_path))
    enabled = set(enabled_plugins)
    if "bundled" in enabled:
        enabled |= set(bundled_names)
    loader = _Loader(plugin_infos, enabled, set(bundled_names), router_flavor)
    return loader.load(data)


def _read(text_or_path: str | os.PathLike[str]) -> str:
    if isinstance(text_or_path, os.PathLike) or ("\n" not in text_or_path and os.path.isfile(text_or_path)):
        with open(text_or_path, encoding="utf-8") as fh:
            return fh.read()
    return str(text_or_path)


def parse_yaml(text: str) -> Any:
    """YAML (or JSON) → Python; a syntax error names its 1-based line and column."""
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(f"failed parsing declarative configuration: {pos}{exc.problem}", where=TOP) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"failed parsing declarative configuration: {exc}", where=TOP) from None


def generate_id(kind: str, key: str) -> str:
    """A uuid5 from the entity type and its natural key, so restarts keep the same ids."""
    return str(uuid.uuid5(ID_NAMESPACE, f"{kind}:{key}"))


def _strip_meta(item: Any, where: str) -> dict[str, Any]:
    """`_comment` (string) and `_ignore` (array) are allowed in any entity and dropped."""
    if not isinstance(item, Mapping):
        raise ConfigError("expected a record", where=where)
    out = dict(item)
    if not isinstance(out.pop("_comment", ""), str):
        raise ConfigError("expected a string", where=where, field="_comment")
    if not isinstance(out.pop("_ignore", []), list):
        raise ConfigError("expected an array", where=where, field="_ignore")
    return out


def _label(kind: str, item: Mapping[str, Any]) -> str | None:
    for key in ("name", "username", "custom_id", "target", "id"):
        if isinstance(item.get(key), str):
            return item[key]
    return None


class _Loader:
    """One load: the entities seen so far, by kind, with their names/ids for references and uniqueness."""

    def __init__(self, infos: Mapping[str, PluginInfo], enabled: set[str], bundled: set[str], flavor: str):
        self.infos, self.enabled, self.bundled, self.flavor = infos, enabled, bundled, flavor
        self.out = DeclarativeConfig()
        self.index: dict[str, dict[str, str]] = {k: {} for k in ("services", "routes", "consumers", "upstreams")}
        self.seen: dict[str, dict[str, str]] = {}
        self.pending_routes: list[tuple[dict, str, str | None]] = []
        self.pending_plugins: list[tuple[dict, str, dict[str, str]]] = []
        self.migrate_paths = False
        self.plugin_keys: dict[str, str] = {}

    def load(self, data: Any) -> DeclarativeConfig:
        data = self._top(data)
        for i, item in enumerate(data.get("services") or []):
            self._service(item, f"services[{i}]")
        for i, item in enumerate(self._list(data, "routes")):
            self.pending_routes.append((item, f"routes[{i}]", None))
        for item, loc, service_id in self.pending_routes:
            self._route(item, loc, service_id)
        for i, item in enumerate(self._list(data, "consumers")):
            self._consumer(item, f"consumers[{i}]")
        for i, item in enumerate(self._list(data, "upstreams")):
            self._upstream(item, f"upstreams[{i}]")
        for i, item in enumerate(self._list(data, "targets")):
            self._target(item, f"targets[{i}]", None)
        for i, item in enumerate(self._list(data, "plugins")):
            self.pending_plugins.append((item, f"plugins[{i}]", {}))
        for item, loc, scope in self.pending_plugins:
            self._plugin(item, loc, scope)
        return self.out

    # -- top level ---------------------------------------------------------------------------------------------

    def _top(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, Mapping):
            raise ConfigError("expected a declarative configuration (a YAML/JSON object)", where=TOP)
        data = _strip_meta(data, TOP)
        version = data.pop("_format_version", None)
        if version is None:
            raise ConfigError("required field missing", where=TOP, field="_format_version")
        if not isinstance(version, str):
            raise ConfigError("expected a string", where=TOP, field="_format_version")
        if version not in FORMAT_VERSIONS:
            raise ConfigError("expected one of: " + ", ".join(FORMAT_VERSIONS), where=TOP, field="_format_version")
        self.out.format_version, self.migrate_paths = version, version != "3.0"
        transform = data.pop("_transform", True)
        if not isinstance(transform, bool):
            raise ConfigError("expected a boolean", where=TOP, field="_transform")
        self.out.transform = transform
        data.pop("_workspace", None)
        if "ca_certificates" in data:
            self.out.ca_certificates = load_ca_certificates(data.pop("ca_certificates"))
        for key in list(data):
            if key in S.IGNORED_COLLECTIONS:
                self._ignore(key, data.pop(key))
            elif key not in S.SCHEMAS:
                raise ConfigError("unknown field", where=TOP, field=str(key))
        return data

    def _list(self, data: Mapping[str, Any], key: str) -> list[Any]:
        items = data.get(key) or []
        if not isinstance(items, list):
            raise ConfigError("expected an array", where=TOP, field=key)
        return items

    def _ignore(self, key: str, items: Any) -> None:
        for i, _ in enumerate(items if isinstance(items, list) else [items]):
            self.out.ignored_entities.append(f"{key}[{i}]")

    # -- one entity --------------------------------------------------------------------------------------------

    def _entity(self, kind: str, raw: Any, loc: str, parent: str | None) -> tuple[dict, dict, dict, str]:
        """Meta stripped, nested lists and foreign keys split off, schema applied: (fields, nested, foreign, where)."""
        where = entity_where(kind, _label(kind, raw) if isinstance(raw, Mapping) else None, loc)
        item = _strip_meta(raw, where)
        nested = {k: item.pop(k) for k in NESTED.get(kind, ()) if k in item}
        for k, v in nested.items():
            if not isinstance(v, list):
                raise ConfigError("expected an array", where=where, field=k)
        if kind == "consumers":
            for key in [k for k in item if k in S.IGNORED_COLLECTIONS]:
                self._ignore(f"{loc}.{key}", item.pop(key))
        foreign = {k: item.pop(k) for k in S.FOREIGN.get(kind, ()) if k in item and k != parent}
        if parent and parent in item:
            raise ConfigError("unknown field", where=where, field=parent)
        if kind == "services" and "url" in item:
            item.update(service_url(item.pop("url"), where))
        if kind == "routes" and self.migrate_paths and isinstance(item.get("paths"), list):
            item["paths"] = [migrate_path(p) if isinstance(p, str) else p for p in item["paths"]]
        fields = S.route_fields(self.flavor) if kind == "routes" else S.SCHEMAS[kind]
        try:
            values = normalize_record(fields, item, "")
            S.entity_checks(kind, values)
        except ConfigError as exc:
            raise exc.located(where) from None
        return values, nested, foreign, where

    def _register(self, kind: str, values: dict, key: str | None, where: str, names: tuple[str, ...]) -> str:
        """Give the entity its id (declared or generated) and enforce Kong's uniqueness rules."""
        ident = values.get("id") or generate_id(kind, key or where)
        seen = self.seen.setdefault(kind, {})
        for attr, value in (*((n, values.get(n)) for n in names), ("primary key", ident)):
            if value is None:
                continue
            if (attr, value) in seen:
                raise ConfigError(
                    f"uniqueness violation: '{kind}' entity with {attr} set to '{value}' already declared", where=where
                )
            seen[(attr, value)] = ident
        if kind in self.index:
            self.index[kind][ident] = ident
            for n in names:
                if values.get(n) is not None:
                    self.index[kind][values[n]] = ident
        return ident

    def _resolve(self, kind: str, ref: Any, field: str, where: str) -> str:
        """A foreign key given as a name, an id, `{id: ..}` or `{name: ..}` → the entity's id."""
        if isinstance(ref, Mapping):
            ref = ref.get("id", ref.get("name", ref.get("username")))
        if not isinstance(ref, str):
            raise ConfigError("expected a string or a record with an id or a name", where=where, field=field)
        if ref not in self.index[kind]:
            raise ConfigError(f"invalid reference '{field}: {ref}' (no such entry in '{kind}')", where=where)
        return self.index[kind][ref]

    def _nested_plugins(self, nested: dict, loc: str, scope: dict[str, str]) -> None:
        for i, item in enumerate(nested.get("plugins", [])):
            self.pending_plugins.append((item, f"{loc}.plugins[{i}]", scope))

    # -- kinds -------------------------------------------------------------------------------------------------

    def _service(self, raw: Any, loc: str) -> None:
        v, nested, _, where = self._entity("services", raw, loc, None)
        ident = self._register("services", v, v["name"], where, ("name",))
        self.out.services[ident] = Service(
            id=ident,
            name=v["name"],
            protocol=v["protocol"],
            host=v["host"],
            port=v["port"],
            path=v["path"],
            retries=v["retries"],
            connect_timeout=v["connect_timeout"],
            write_timeout=v["write_timeout"],
            read_timeout=v["read_timeout"],
            enabled=v["enabled"],
            tags=v["tags"],
            tls_verify=v["tls_verify"],
            tls_verify_depth=v["tls_verify_depth"],
            ca_certificates=v["ca_certificates"],
        )
        for i, item in enumerate(nested.get("routes", [])):
            self.pending_routes.append((item, f"{loc}.routes[{i}]", ident))
        self._nested_plugins(nested, loc, {"service": ident})

    def _route(self, raw: Any, loc: str, service_id: str | None) -> None:
        v, nested, foreign, where = self._entity("routes", raw, loc, "service" if service_id else None)
        if "service" in foreign and foreign["service"] is not None:
            service_id = self._resolve("services", foreign["service"], "service", where)
        ident = self._register("routes", v, v["name"], where, ("name",))
        keep = (
            "paths",
            "methods",
            "hosts",
            "headers",
            "protocols",
            "strip_path",
            "preserve_host",
            "regex_priority",
            "path_handling",
            "https_redirect_status_code",
            "request_buffering",
            "response_buffering",
            "tags",
            "snis",
            "sources",
            "destinations",
        )
        route = Route(id=ident, name=v["name"], service_id=service_id, **{k: v[k] for k in keep})
        route.created_at = len(self.out.routes)
        self.out.routes.append(route)
        self._nested_plugins(nested, loc, {"route": ident})

    def _consumer(self, raw: Any, loc: str) -> None:
        v, nested, _, where = self._entity("consumers", raw, loc, None)
        ident = self._register("consumers", v, v["username"] or v["custom_id"], where, ("username", "custom_id"))
        self.out.consumers[ident] = Consumer(id=ident, username=v["username"], custom_id=v["custom_id"], tags=v["tags"])
        self._nested_plugins(nested, loc, {"consumer": ident})

    def _upstream(self, raw: Any, loc: str) -> None:
        v, nested, _, where = self._entity("upstreams", raw, loc, None)
        ident = self._register("upstreams", v, v["name"], where, ("name",))
        self.out.upstreams[v["name"]] = Upstream(
            id=ident,
            name=v["name"],
            healthchecks=v["healthchecks"],
            algorithm=v["algorithm"],
            host_header=v["host_header"],
            tags=v["tags"],
        )
        for i, item in enumerate(nested.get("targets", [])):
            self._target(item, f"{loc}.targets[{i}]", v["name"])

    def _target(self, raw: Any, loc: str, upstream_name: str | None) -> None:
        v, _, foreign, where = self._entity("targets", raw, loc, "upstream" if upstream_name else None)
        if upstream_name is None:
            if foreign.get("upstream") is None:
                raise ConfigError("required field missing", where=where, field="upstream")
            up_id = self._resolve("upstreams", foreign["upstream"], "upstream", where)
            upstream_name = next(u.name for u in self.out.upstreams.values() if u.id == up_id)
        upstream = self.out.upstreams[upstream_name]
        v["target"] = S.normalize_target(v["target"])
        v["upstream_target"] = f"{upstream.id}:{v['target']}"
        ident = self._register("targets", v, v["upstream_target"], where, ("upstream_target",))
        upstream.targets.append(Target(id=ident, target=v["target"], weight=v["weight"], tags=v["tags"]))

    def _plugin(self, raw: Any, loc: str, scope: dict[str, str]) -> None:
        parent = next(iter(scope), None)
        v, _, foreign, where = self._entity("plugins", raw, loc, parent)
        ids = dict(scope)
        for kind, key in (("routes", "route"), ("services", "service"), ("consumers", "consumer")):
            if foreign.get(key) is not None:
                ids[key] = self._resolve(kind, foreign[key], key, where)
        name = v["name"]
        if name not in self.enabled:
            raise ConfigError(
                f"plugin '{name}' not enabled; add it to the 'plugins' configuration property",
                where=where,
                field="name",
            )
        if name not in self.infos:
            if name not in self.bundled:
                raise ConfigError(f"{name} plugin is enabled but not installed; no plugin found", where=where)
            if name not in self.out.unsupported_plugins:
                self.out.unsupported_plugins.append(name)
            return
        config = normalize_config(self.infos[name], v["config"], where)
        entity_check = getattr(self.infos[name], "entity_check", None)  # natively-run bundled plugins (native/)
        if entity_check is not None and (err := entity_check(config)):
            raise ConfigError(err, where=where)
        route_id, service_id, consumer_id = ids.get("route"), ids.get("service"), ids.get("consumer")
        plugin = Plugin(
            id="",
            name=name,
            config=config,
            enabled=v["enabled"],
            protocols=v["protocols"],
            route_id=route_id,
            service_id=service_id,
            consumer_id=consumer_id,
            instance_name=v["instance_name"],
            tags=v["tags"],
        )
        if plugin.cache_key in self.plugin_keys:
            raise ConfigError(
                f"uniqueness violation: 'plugins' entity with name '{name}' already declared {self._scope(plugin)}"
                f" (at {self.plugin_keys[plugin.cache_key]})",
                where=where,
            )
        self.plugin_keys[plugin.cache_key] = loc
        plugin.id = self._register("plugins", v, plugin.cache_key, where, ("instance_name",))
        self.out.plugins.append(plugin)

    def _scope(self, plugin: Plugin) -> str:
        """`for route 'stories' and consumer 'app'`, or `globally`, for error messages."""
        parts = []
        for kind, key, ident in (
            ("routes", "route", plugin.route_id),
            ("services", "service", plugin.service_id),
            ("consumers", "consumer", plugin.consumer_id),
        ):
            if ident:
                entity = {
                    "routes": {r.id: r for r in self.out.routes},
                    "services": self.out.services,
                    "consumers": self.out.consumers,
                }[kind][ident]
                parts.append(f"{key} '{getattr(entity, 'name', None) or getattr(entity, 'username', None) or ident}'")
        return "for " + " and ".join(parts) if parts else "globally"


def service_url(url: Any, where: str) -> dict[str, Any]:
    """services.lua `url` shorthand: protocol, host, port (80/443 from the scheme) and path (null when absent)."""
    if not isinstance(url, str):
        raise ConfigError("expected a string", where=where, field="url")
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"invalid url: {url}", where=where, field="url") from None
    if port is None:
        port = {"http": 80, "https": 443}.get(parts.scheme)
    return {"protocol": parts.scheme or None, "host": parts.hostname, "port": port, "path": parts.path or None}


def migrate_path(path: str) -> str:
    """Kong's 2.x → 3.0 route path migration: a path that is not plain is a regex and gets `~`."""
    if re.fullmatch(r"[a-zA-Z0-9.\-_~/%]*", path):
        return normalize_path(path)
    return "~" + unquote(path)
