"""Which plugin configs run, in which order: Kong 3.x plugins_iterator.lua."""

from __future__ import annotations

from kong_emulator.config.entities import Consumer, DeclarativeConfig, Plugin, PluginInfo, Route, Service
from kong_emulator.runloop.plugins_iterator import handler_order, lookup_order, plugins_for

ROUTE = Route(id="r", name="r", service_id="s")
SERVICE = Service(id="s", name="s")
CONSUMER = Consumer(id="c", username="app")
SCHEMA = {"name": "x", "fields": [{"config": {"type": "record", "fields": []}}]}


def info(name, priority, phases=("access", "log")):
    return PluginInfo(name=name, version="1.0.0", priority=priority, phases=tuple(phases), schema=SCHEMA)


def plugin(pid, name="p", route=None, service=None, consumer=None, **kw):
    return Plugin(id=pid, name=name, config={}, route_id=route, service_id=service, consumer_id=consumer, **kw)


def run(plugins, infos, phase="access", route=ROUTE, service=SERVICE, consumer=None):
    return [p.id for p in plugins_for(DeclarativeConfig(plugins=plugins), route, service, consumer, phase, infos)]


ALL_SCOPES = [
    plugin("global"),
    plugin("service", service="s"),
    plugin("route", route="r"),
    plugin("consumer", consumer="c"),
    plugin("route+service", route="r", service="s"),
    plugin("service+consumer", service="s", consumer="c"),
    plugin("route+consumer", route="r", consumer="c"),
    plugin("route+service+consumer", route="r", service="s", consumer="c"),
]


def test_most_specific_scope_wins_in_kong_3_order():
    infos = {"p": info("p", 1000)}
    expected = ["route+service+consumer", "route+consumer", "service+consumer", "route+service", "consumer", "route"]
    remaining = list(ALL_SCOPES)
    for winner in [*expected, "service", "global"]:
        assert run(remaining, infos, consumer=CONSUMER) == [winner]
        remaining = [p for p in remaining if p.id != winner]


def test_lookup_order_only_tries_scopes_the_request_has():
    assert lookup_order("r", None, None) == [("r", None, None), (None, None, None)]
    assert lookup_order(None, "s", "c")[0] == (None, "s", "c")


def test_route_plus_service_beats_consumer_alone():
    infos = {"p": info("p", 1000)}
    plugins = [plugin("consumer", consumer="c"), plugin("route+service", route="r", service="s")]
    assert run(plugins, infos, consumer=CONSUMER) == ["route+service"]


def test_other_routes_plugins_do_not_apply():
    infos = {"p": info("p", 1000)}
    assert run([plugin("x", route="other"), plugin("g")], infos) == ["g"]


def test_order_is_priority_descending_then_name_descending():
    infos = {"a": info("a", 900), "b": info("b", 1450), "c": info("c", 900), "d": info("d", 910)}
    plugins = [plugin(n, name=n) for n in "abcd"]
    assert run(plugins, infos) == ["b", "d", "c", "a"]
    assert handler_order(infos) == ["b", "d", "c", "a"]


def test_disabled_and_stream_only_plugins_are_skipped():
    infos = {"p": info("p", 1)}
    assert run([plugin("off", enabled=False)], infos) == []
    assert run([plugin("tcp", protocols=["tcp"])], infos) == []
    assert run([plugin("https", protocols=["https"])], infos) == ["https"]  # Kong checks the subsystem only


def test_rewrite_runs_global_plugins_only():
    infos = {"p": info("p", 1, ("rewrite", "access")), "q": info("q", 2, ("rewrite",))}
    plugins = [plugin("route-p", route="r"), plugin("global-q", name="q")]
    assert run(plugins, infos, phase="rewrite") == ["global-q"]
    assert run(plugins, infos, phase="access") == ["route-p"]


def test_only_plugins_implementing_the_phase_run():
    infos = {"p": info("p", 1, ("log",)), "q": info("q", 2, ("access",))}
    plugins = [plugin("p"), plugin("q", name="q")]
    assert run(plugins, infos, phase="log") == ["p"]
    assert run(plugins, infos, phase="access") == ["q"]


def test_no_consumer_schema_ignores_consumer_scoped_configs():
    schema = {"name": "p", "fields": [{"consumer": {"type": "foreign", "eq": None}}, *SCHEMA["fields"]]}
    infos = {"p": PluginInfo("p", "1.0.0", 1, ("access",), schema)}
    plugins = [plugin("consumer", consumer="c"), plugin("global")]
    assert run(plugins, infos, consumer=CONSUMER) == ["global"]


def test_unknown_plugin_names_are_ignored():
    assert run([plugin("x", name="lua-only")], {"p": info("p", 1)}) == []
