"""sv-expand config: the Kong schema shape and parse_config's cross-field rules."""

import pytest
from storyverse_plugins.expand.schema import DEFAULT_FORWARD, Schema, parse_config

CHARS = {"name": "characters", "id_field": "character_ids", "url": "http://characters:9102/api/v1/characters"}


def kong_config(**over):
    """What Kong sends: every field present, null when unset, plus Kong's own keys."""
    raw = {name: None for field in Schema for name in field}
    raw.update({"__plugin_id": "p1", "__seq__": 3, "route_id": "r1", "expansions": [dict(CHARS, target_field=None)]})
    raw.update(over)
    return raw


def test_every_field_and_subfield_has_a_description():
    for field in Schema:
        ((name, fdef),) = field.items()
        assert fdef["description"], name
        for sub in fdef.get("elements", {}).get("fields", ()):
            ((sub_name, sub_def),) = sub.items()
            assert sub_def["description"], f"{name}.{sub_name}"


def test_kong_nulls_take_the_defaults():
    cfg = parse_config(kong_config())
    assert (cfg.query_arg, cfg.markers_field, cfg.envelope_field) == ("expand", "_expanded", None)
    assert (cfg.budget_ms, cfg.timeout_ms, cfg.max_ids, cfg.max_concurrency) == (300, 250, 25, 8)
    assert cfg.forward_headers == DEFAULT_FORWARD and "X-User-Id" in DEFAULT_FORWARD
    (exp,) = cfg.expansions
    assert exp.target_field == "characters"


@pytest.mark.parametrize(
    "url, resource, expected",
    [
        ("http://c:1/api/v1/characters", "7", "http://c:1/api/v1/characters/7"),
        ("http://c:1/api/v1/characters/", "7", "http://c:1/api/v1/characters/7"),
        ("https://c/x/{id}/profile", "a-1", "https://c/x/a-1/profile"),
        ("http://c/__sleep?ms=10&id={id}", "9", "http://c/__sleep?ms=10&id=9"),
    ],
)
def test_resource_urls(url, resource, expected):
    cfg = parse_config(kong_config(expansions=[dict(CHARS, url=url)]))
    assert cfg.expansions[0].url_for(resource) == expected


@pytest.mark.parametrize(
    "url, message",
    [
        ("ftp://c/x", "absolute http(s) URL"),
        ("/api/v1/characters", "absolute http(s) URL"),
        ("http://user:pw@c/x", "no credentials"),
        ("http://c/x#frag", "no credentials, fragment"),
        ("http://{id}.internal/x", "path or query only"),
        ("http://c/{id}/{id}", "may appear once"),
        ("http://c/{name}", "placeholder other than"),
        ("http://c/x?all=1", "needs an {id} placeholder"),
        ("http://c/x y", "absolute http(s) URL"),
    ],
)
def test_unsafe_or_ambiguous_urls_are_refused(url, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("{", r"\{")):
        parse_config(kong_config(expansions=[dict(CHARS, url=url)]))


@pytest.mark.parametrize(
    "over, message",
    [
        ({"expansions": []}, "at least one"),
        ({"expansions": None}, "at least one"),
        ({"expansions": [dict(CHARS, name="Characters")]}, "lower case"),
        ({"expansions": [CHARS, dict(CHARS, id_field="x")]}, "used twice"),
        ({"expansions": [dict(CHARS, target_field="character_ids")]}, "overwrite"),
        ({"expansions": [dict(CHARS, target_field="_expanded")]}, "overwrite"),
        ({"expansions": [dict(CHARS, id_field="a.b")]}, "field name"),
        ({"timeout_ms": 500, "budget_ms": 300}, "must not exceed"),
        ({"budget_ms": 0}, "between 10 and 5000"),
        ({"max_ids": 1000}, "between 1 and 100"),
        ({"forward_headers": ["X-User-Id", "bad header"]}, "header name"),
        ({"envelope_field": "a/b"}, "field name"),
    ],
)
def test_bad_configs_are_refused(over, message):
    with pytest.raises(ValueError, match=message):
        parse_config(kong_config(**over))
