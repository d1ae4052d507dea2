"""sv-rbac config: the Kong schema DSL and parse_config's cross-field rules (bad configs fail with clear messages)."""

from __future__ import annotations

import pytest
from storyverse_plugins.rbac.schema import DEFAULT_AGE_BANDS, Config, Owned, Rule, Schema, parse_config

KONG_EXTRAS = {"__plugin_id": "p1", "__seq__": 3, "__key__": "k", "route_id": "r-1", "service_id": None}
NULLS = {next(iter(f)): None for f in Schema}  # Kong sends every field, null when unset


def _walk(fields):
    for entry in fields:
        ((name, spec),) = entry.items()
        yield name, spec
        elements = spec.get("elements") or {}
        if elements.get("type") == "record":
            yield from _walk(elements["fields"])


def test_every_field_and_nested_field_has_a_description_and_a_type():
    for name, spec in _walk(Schema):
        assert spec.get("description"), name
        assert spec["type"] in {"string", "boolean", "integer", "number", "array", "record", "map", "set"}, name


def test_the_schema_defaults_parse_to_the_dataclass_defaults():
    defaults = {next(iter(f)): f[next(iter(f))].get("default") for f in Schema}
    cfg = parse_config({**defaults, "rules": [{"roles": ["parent"]}]})
    assert cfg == Config(rules=(Rule(None, frozenset({"parent"})),))


def test_kong_nulls_and_extras_are_tolerated():
    cfg = parse_config({**NULLS, **KONG_EXTRAS, "rules": [{"methods": ["get"], "roles": ["child"]}]})
    assert cfg.rules == (Rule(frozenset({"GET"}), frozenset({"child"})),)
    assert cfg.route_id == "r-1" and cfg.age_bands == DEFAULT_AGE_BANDS and cfg.enforce_hours is True
    assert cfg.child_denied_methods == frozenset({"DELETE"})


def test_a_full_config():
    cfg = parse_config(
        {
            **NULLS,
            "rules": [{"methods": ["GET"], "roles": ["parent", "child"]}, {"methods": None, "roles": ["parent"]}],
            "owned_captures": [{"name": "child_id", "kind": "child", "optional": None}],
            "kind_capture": "kind",
            "admin_override": True,
            "min_age_band": "6-9",
            "min_content_rating": "TV-Y7",
            "max_content_rating": "TV-PG",
            "child_denied_methods": ["DELETE", "PUT"],
        }
    )
    assert cfg.rules[1] == Rule(None, frozenset({"parent"}))
    assert cfg.owned == (Owned("child_id", "child", False),)
    assert cfg.kind_capture == "kind" and cfg.admin_override
    assert cfg.child_denied_methods == frozenset({"DELETE", "PUT"})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, "needs at least one rule"),
        ({"rules": []}, "needs at least one rule"),
        ({"rules": "parent"}, "rules must be an array"),
        ({"rules": ["parent"]}, "rules[0] must be a record"),
        ({"rules": [{"roles": []}]}, "rules[0].roles must name at least one role"),
        ({"rules": [{"roles": ["kid"]}]}, "rules[0].roles: unknown value 'kid'"),
        ({"rules": [{"methods": ["FETCH"], "roles": ["parent"]}]}, "rules[0].methods: unknown value 'FETCH'"),
        ({"rules": [{"roles": ["parent"]}, {"methods": ["GET"], "roles": ["child"]}]}, "rules[1] is unreachable"),
        (
            {"rules": [{"methods": ["GET", "POST"], "roles": ["child"]}, {"methods": ["GET"], "roles": ["parent"]}]},
            "earlier rules already cover GET",
        ),
        ({"public": "yes"}, "public must be a boolean"),
        ({"public": True, "owned_captures": [{"name": "child-id", "kind": "child"}]}, "capture name"),
        ({"public": True, "owned_captures": [{"name": "child_id", "kind": "pet"}]}, "kind must be one of"),
        ({"public": True, "owned_captures": [{"name": "a", "kind": "child"}] * 2}, "listed twice"),
        ({"public": True, "owned_captures": ["child_id"]}, "must be a record with name and kind"),
        ({"public": True, "generation_kind": "video"}, "generation_kind must be one of"),
        ({"public": True, "generation_kind": "text", "kind_capture": "kind"}, "exclusive"),
        ({"public": True, "kind_capture": "(?<kind>)"}, "kind_capture must be a capture name"),
        ({"public": True, "min_age_band": "7"}, "min_age_band '7' is not one of age_bands"),
        ({"public": True, "max_content_rating": "R"}, "max_content_rating 'R' is not one of content_ratings"),
        ({"public": True, "min_content_rating": "TV-14", "max_content_rating": "TV-G"}, "above max_content_rating"),
        ({"public": True, "age_bands": []}, "age_bands must not be empty"),
        ({"public": True, "content_ratings": ["G", "G"]}, "content_ratings lists a value twice"),
        ({"public": True, "content_ratings": ["G", "P G"]}, "is not a short token"),
        ({"public": True, "content_rating_header": "X Rating"}, "is not a header name"),
        ({"public": True, "realm": 'a"b'}, "realm must be printable"),
        ({"public": True, "child_denied_methods": ["ERASE"]}, "child_denied_methods: unknown value"),
    ],
)
def test_bad_configs_are_rejected_with_a_clear_message(raw, message):
    with pytest.raises(ValueError, match=None) as info:
        parse_config({**NULLS, **raw})
    assert message in str(info.value)
