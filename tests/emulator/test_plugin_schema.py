"""Kong's schema DSL applied to plugin configs, and the checks on a query command's plugin info."""

from __future__ import annotations

import pytest
from kong_emulator.config.entities import PluginInfo
from kong_emulator.config.errors import ConfigError
from kong_emulator.config.plugin_schema import lua_find, lua_pattern_to_regex, normalize_config, validate_plugin_info

WHERE = "in 'plugins' entity 'sv-quota' (plugins[0])"
FIELDS = [
    {"redis_host": {"type": "string", "required": True}},
    {"redis_port": {"type": "integer", "default": 6379, "between": [0, 65535]}},
    {"fault_tolerant": {"type": "boolean", "default": True}},
    {"key_prefix": {"type": "string", "match": "^[%w:_-]+$", "default": "sv:quota:v1:"}},
    {"window": {"type": "string", "one_of": ["second", "minute", "day"], "default": "day"}},
    {"ratio": {"type": "number", "gt": 0, "default": 1.5}},
    {"hash": {"type": "string", "len_eq": 4}},
    {"note": {"type": "string"}},
    {"roles": {"type": "set", "elements": {"type": "string", "len_min": 2}, "len_min": 1, "default": ["parent"]}},
    {"paths": {"type": "array", "elements": {"type": "string", "starts_with": "/"}}},
    {"tiers": {"type": "map", "keys": {"type": "string"}, "values": {"type": "integer", "gt": 0}}},
    {
        "burst": {
            "type": "record",
            "fields": [{"size": {"type": "integer", "default": 2}}, {"label": {"type": "string"}}],
        }
    },
]


def info(fields=FIELDS) -> PluginInfo:
    schema = {"name": "sv-quota", "fields": [{"config": {"type": "record", "fields": fields}}]}
    return PluginInfo(name="sv-quota", version="1.0.0", priority=910, phases=("access",), schema=schema)


def norm(config):
    return normalize_config(info(), config, WHERE)


def error_of(config) -> str:
    with pytest.raises(ConfigError) as err:
        norm(config)
    return str(err.value)


def test_defaults_nulls_and_expanded_records():
    assert norm({"redis_host": "redis"}) == {
        "redis_host": "redis",
        "redis_port": 6379,
        "fault_tolerant": True,
        "key_prefix": "sv:quota:v1:",
        "window": "day",
        "ratio": 1.5,
        "hash": None,
        "note": None,
        "roles": ["parent"],
        "paths": None,
        "tiers": None,
        "burst": {"size": 2, "label": None},
    }


def test_explicit_values_are_kept_and_sets_deduplicated():
    out = norm({"redis_host": "r", "note": None, "roles": ["parent", "child", "parent"], "tiers": {"basic": 5}})
    assert out["note"] is None and out["roles"] == ["parent", "child"] and out["tiers"] == {"basic": 5}


def test_integral_floats_are_integers():
    assert norm({"redis_host": "r", "redis_port": 6380.0})["redis_port"] == 6380


@pytest.mark.parametrize(
    ("config", "field", "reason"),
    [
        ({}, "config.redis_host", "required field missing"),
        ({"redis_host": None}, "config.redis_host", "required field missing"),
        ({"redis_host": 1}, "config.redis_host", "expected a string"),
        ({"redis_host": ""}, "config.redis_host", "length must be at least 1"),
        ({"redis_host": "r", "redis_port": "6379"}, "config.redis_port", "expected an integer"),
        ({"redis_host": "r", "redis_port": 70000}, "config.redis_port", "value should be between 0 and 65535"),
        ({"redis_host": "r", "fault_tolerant": "yes"}, "config.fault_tolerant", "expected a boolean"),
        ({"redis_host": "r", "key_prefix": "a b"}, "config.key_prefix", "invalid value: a b"),
        ({"redis_host": "r", "window": "week"}, "config.window", "expected one of: second, minute, day"),
        ({"redis_host": "r", "ratio": 0}, "config.ratio", "value must be greater than 0"),
        ({"redis_host": "r", "ratio": True}, "config.ratio", "expected a number"),
        ({"redis_host": "r", "hash": "abc"}, "config.hash", "length must be 4"),
        ({"redis_host": "r", "roles": []}, "config.roles", "length must be at least 1"),
        ({"redis_host": "r", "roles": "parent"}, "config.roles", "expected a set"),
        ({"redis_host": "r", "roles": ["x"]}, "config.roles[0]", "length must be at least 2"),
        ({"redis_host": "r", "paths": ["/a", "b"]}, "config.paths[1]", "should start with: /"),
        ({"redis_host": "r", "paths": [None]}, "config.paths[0]", "field is not nullable"),
        ({"redis_host": "r", "tiers": {"basic": 0}}, "config.tiers.basic", "value must be greater than 0"),
        ({"redis_host": "r", "tiers": []}, "config.tiers", "expected a map"),
        ({"redis_host": "r", "burst": {"size": "2"}}, "config.burst.size", "expected an integer"),
        ({"redis_host": "r", "burst": {"sise": 2}}, "config.burst.sise", "unknown field"),
        ({"redis_host": "r", "redis_hots": "x"}, "config.redis_hots", "unknown field"),
    ],
)
def test_errors_name_the_config_field_with_kongs_reason(config, field, reason):
    assert error_of(config) == f"{WHERE}: field '{field}': {reason}"


def test_config_that_is_not_a_record():
    assert error_of(["x"]) == f"{WHERE}: field 'config': expected a record"


def test_nested_required_field_fails_even_when_the_record_is_omitted():
    fields = [{"redis": {"type": "record", "fields": [{"host": {"type": "string", "required": True}}]}}]
    with pytest.raises(ConfigError, match=r"field 'config.redis.host': required field missing"):
        normalize_config(info(fields), {}, WHERE)


@pytest.mark.parametrize(
    ("subject", "pattern", "found"),
    [
        ("GET", "^%u+$", True),
        ("get", "^%u+$", False),
        ("a.b", "^[%w%.%-%_~]+$", True),
        ("a b", "^[%w%.%-%_~]+$", False),
        ("*.example.com", "^%*%.", True),
        ("api.*", "%.%*$", True),
        ("a*b*c", "^[^*]*%*?[^*]*$", False),
        ("abc", "b", True),
        ("a1", "^%a%d$", True),
        ("aaa", "^a-$", True),
        ("x$y", "x$y", True),
    ],
)
def test_lua_patterns(subject, pattern, found):
    assert lua_find(subject, pattern) is found


def test_unsupported_lua_items_are_refused():
    with pytest.raises(ConfigError, match="unsupported Lua pattern item '%b'"):
        lua_pattern_to_regex("%b()")


RAW = {
    "Name": "sv-quota",
    "Priority": 910,
    "Version": "1.2.3",
    "Phases": ["access", "log"],
    "Schema": {"name": "sv-quota", "fields": [{"config": {"type": "record", "fields": FIELDS}}]},
}


def test_valid_plugin_info_becomes_plugin_info():
    got = validate_plugin_info(RAW)
    assert (got.name, got.priority, got.version, got.phases) == ("sv-quota", 910, "1.2.3", ("access", "log"))
    assert got.config_fields == FIELDS


VERSION_ERR = 'Plugin "sv-quota" cannot be loaded because its VERSION field does not follow the "x.y.z" format'
PRIORITY_ERR = 'Plugin "sv-quota" cannot be loaded because its PRIORITY field is not a valid integer number'
IN_INFO = "in plugin info of 'sv-quota'"


def schema_with(field: dict) -> dict:
    return {"Schema": {"name": "x", "fields": [{"config": {"type": "record", "fields": [{"a": field}]}}]}}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"Version": "1.2"}, VERSION_ERR),
        ({"Version": None}, VERSION_ERR),
        ({"Priority": "910"}, PRIORITY_ERR),
        ({"Name": ""}, "in plugin info: field 'Name': expected a non-empty string"),
        ({"Phases": ["acces"]}, f"{IN_INFO}: field 'Phases[0]': expected one of: certificate,"),
        ({"Schema": {"name": "x"}}, f"{IN_INFO}: field 'Schema': error in schema definition: no 'fields'"),
        (schema_with({"type": "strng"}), f"{IN_INFO}: field 'config.a': invalid type: strng"),
        (schema_with({"type": "string", "defualt": "x"}), f"{IN_INFO}: field 'config.a': unknown field attribute"),
        (schema_with({"type": "array"}), f"{IN_INFO}: field 'config.a': error in schema definition: missing attribute"),
        (
            schema_with({"type": "integer", "default": "1"}),
            f"{IN_INFO}: field 'config.a': invalid default: expected an",
        ),
    ],
)
def test_plugin_info_is_checked_like_kong(change, message):
    with pytest.raises(ConfigError) as err:
        validate_plugin_info({**RAW, **change})
    assert str(err.value).startswith(message)
