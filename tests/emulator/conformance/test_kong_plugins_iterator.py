"""Kong 3.9.1 kong/runloop/plugins_iterator.lua: which configuration of a plugin runs for a request (lookup_cfg,
lines 195-265; spec/01-unit/28-plugins-iterator/02-lookup_cfg_spec.lua) and in which order plugins run."""

from __future__ import annotations

import pytest
from kong_emulator.config.entities import Consumer, DeclarativeConfig, Plugin, PluginInfo, Route, Service
from kong_emulator.runloop.plugins_iterator import plugins_for

ROUTE = Route(id="r", name="r", service_id="s")
SERVICE = Service(id="s", name="s")
CONSUMER = Consumer(id="c", username="app")
SCHEMA = {"name": "x", "fields": [{"config": {"type": "record", "fields": []}}]}
SCOPES = {  # plugins_iterator.lua:198-207, best first
    "route+service+consumer": {"route_id": "r", "service_id": "s", "consumer_id": "c"},
    "route+consumer": {"route_id": "r", "consumer_id": "c"},
    "service+consumer": {"service_id": "s", "consumer_id": "c"},
    "route+service": {"route_id": "r", "service_id": "s"},
    "consumer": {"consumer_id": "c"},
    "route": {"route_id": "r"},
    "service": {"service_id": "s"},
    "global": {},
}


def _ids(plugins, infos, consumer=CONSUMER):
    return [p.id for p in plugins_for(DeclarativeConfig(plugins=plugins), ROUTE, SERVICE, consumer, "access", infos)]


@pytest.mark.parametrize("best", list(SCOPES))
def test_the_most_specific_configuration_wins(best):
    # 02-lookup_cfg_spec.lua:15-52: each combination wins over every less specific one
    order = list(SCOPES)
    present = order[order.index(best) :]
    plugins = [Plugin(id=name, name="p", config={}, **SCOPES[name]) for name in present]
    info = {"p": PluginInfo(name="p", version="1.0.0", priority=10, phases=("access",), schema=SCHEMA)}
    assert _ids(plugins, info) == [best]


def test_plugins_run_by_priority_highest_first():
    # plugins_iterator.lua sorts the loaded plugins by PRIORITY, descending (kong/init.lua sort_plugins_for_execution)
    infos = {
        n: PluginInfo(name=n, version="1.0.0", priority=pr, phases=("access",), schema=SCHEMA)
        for n, pr in (("low", 1), ("high", 1000), ("mid", 500))
    }
    plugins = [Plugin(id=n, name=n, config={}) for n in ("low", "high", "mid")]
    assert _ids(plugins, infos, consumer=None) == ["high", "mid", "low"]
