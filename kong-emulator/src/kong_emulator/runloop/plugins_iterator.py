"""Which plugins run for a request, in which order: Kong 3.x `kong/runloop/plugins_iterator.lua`.

For each plugin name the most specific configuration wins (`lookup_cfg`): route+service+consumer, route+consumer,
service+consumer, route+service, consumer, route, service, global. Disabled plugins and plugins without an
http-subsystem protocol are left out (`should_process_plugin`); `rewrite` (and `certificate`) only ever see global
plugins (`get_global_iterator`). The result is in handler order: PRIORITY descending, equal priorities by name
descending (`kong/db/dao/plugins.lua` `sort_by_handler_priority`).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

from kong_emulator.config.entities import Consumer, DeclarativeConfig, Plugin, PluginInfo, Route, Service

SUBSYSTEM_PROTOCOLS = {
    "http": frozenset({"http", "https", "grpc", "grpcs", "ws", "wss"}),
    "stream": frozenset({"tcp", "tls", "tls_passthrough", "udp"}),
}
GLOBAL_ONLY_PHASES = frozenset({"rewrite", "certificate"})
Combo = tuple[str | None, str | None, str | None]  # (route_id, service_id, consumer_id)


def lookup_order(route_id: str | None, service_id: str | None, consumer_id: str | None) -> list[Combo]:
    """The scopes `lookup_cfg` tries, most specific first, for the ids a request has."""
    r, s, c = route_id, service_id, consumer_id
    candidates: list[tuple[bool, Combo]] = [
        (bool(r and s and c), (r, s, c)),
        (bool(r and c), (r, None, c)),
        (bool(s and c), (None, s, c)),
        (bool(r and s), (r, s, None)),
        (bool(c), (None, None, c)),
        (bool(r), (r, None, None)),
        (bool(s), (None, s, None)),
        (True, (None, None, None)),
    ]
    return [combo for ok, combo in candidates if ok]


def handler_order(infos: Mapping[str, PluginInfo]) -> list[str]:
    """Plugin names as Kong sorts its handlers: priority descending, ties by name descending."""
    return sorted(infos, key=lambda n: (infos[n].priority, n), reverse=True)


def scope_exclusions(info: PluginInfo) -> tuple[bool, bool, bool]:
    """(no_route, no_service, no_consumer): schema fields `route`/`service`/`consumer` declared with `eq = null`."""
    flags = {}
    for entry in info.schema.get("fields", []):
        for name, fdef in entry.items():
            if name in ("route", "service", "consumer") and isinstance(fdef, Mapping) and "eq" in fdef:
                flags[name] = fdef["eq"] is None
    return flags.get("route", False), flags.get("service", False), flags.get("consumer", False)


class PluginsIterator:
    """The configured plugins of one DeclarativeConfig, indexed by name and scope (Kong's `combos`)."""

    def __init__(self, config: DeclarativeConfig, infos: Mapping[str, PluginInfo], subsystem: str = "http"):
        self.infos = infos
        protocols = SUBSYSTEM_PROTOCOLS[subsystem]
        self.combos: dict[str, dict[Combo, Plugin]] = {}
        for plugin in config.plugins:
            if plugin.enabled and protocols.intersection(plugin.protocols) and plugin.name in infos:
                key = (plugin.route_id, plugin.service_id, plugin.consumer_id)
                self.combos.setdefault(plugin.name, {})[key] = plugin
        self.order = [n for n in handler_order(infos) if n in self.combos]

    def plugins_for(
        self, route: Route | None, service: Service | None, consumer: Consumer | None, phase: str
    ) -> list[Plugin]:
        """The plugin configs that run in `phase` for a request matched to route/service and identified consumer."""
        out = []
        for name in self.order:
            info = self.infos[name]
            if phase not in info.phases:
                continue
            combos = self.combos[name]
            if phase in GLOBAL_ONLY_PHASES:
                plugin = combos.get((None, None, None))
            else:
                plugin = self._lookup(info, combos, route, service, consumer)
            if plugin is not None:
                out.append(plugin)
        return out

    @staticmethod
    def _lookup(info: PluginInfo, combos: dict[Combo, Plugin], route, service, consumer) -> Plugin | None:
        no_route, no_service, no_consumer = scope_exclusions(info)
        ids = (
            None if no_route or route is None else route.id,
            None if no_service or service is None else service.id,
            None if no_consumer or consumer is None else consumer.id,
        )
        for combo in lookup_order(*ids):
            if combo in combos:
                return combos[combo]
        return None


_CACHE: dict[int, tuple[Any, Mapping[str, PluginInfo], PluginsIterator]] = {}


def plugins_for(
    config: DeclarativeConfig,
    route: Route | None,
    service: Service | None,
    consumer: Consumer | None,
    phase: str,
    infos: Mapping[str, PluginInfo],
) -> list[Plugin]:
    """`PluginsIterator(config, infos).plugins_for(...)`, with the index built once per (config, infos)."""
    entry = _CACHE.get(id(config))
    if entry is None or entry[0]() is not config or entry[1] is not infos:
        iterator = PluginsIterator(config, infos)
        _CACHE[id(config)] = (weakref.ref(config), infos, iterator)
    else:
        iterator = entry[2]
    return iterator.plugins_for(route, service, consumer, phase)
