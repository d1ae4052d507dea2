"""Kong's schema DSL (`kong/db/schema/init.lua`), applied to plugin configs and to the emulator's own entity schemas.

`normalize_config` does what Kong does to a plugin's `config` before the plugin sees it: defaults for absent fields
(`handle_missing_field`: a default, else the expanded record for records, else `null`), `None` for unset optional
fields, type checks, validators in Kong's `validators_order`, unknown fields rejected. `validate_plugin_info` checks
what a plugin server's query command prints, as `kong/db/dao/plugins.lua` and the metaschema do.
"""

from __future__ import annotations

import copy
import re
import string
from collections.abc import Callable, Mapping
from typing import Any

from kong_emulator.config.entities import PluginInfo
from kong_emulator.config.errors import ConfigError

VALID_TYPES = frozenset({"array", "set", "string", "number", "boolean", "integer", "foreign", "map", "record"})
KNOWN_ATTRIBUTES = frozenset(
    {
        "type", "required", "default", "description", "nullable", "one_of", "not_one_of", "eq", "ne", "gt",
        "between", "len_eq", "len_min", "len_max", "match", "not_match", "match_all", "match_any", "match_none",
        "starts_with", "contains", "uuid", "timestamp", "elements", "fields", "keys", "values", "referenceable",
        "encrypted", "auto", "unique", "immutable", "indexed", "legacy", "deprecation", "examples", "is_regex",
        "entity_checks", "shorthand_fields", "translate_backwards", "err", "json_schema", "reference", "on_delete",
        "mutually_exclusive_subsets", "custom_validator",
    }
)  # fmt: skip
KONG_PHASES = ("certificate", "rewrite", "access", "response", "header_filter", "body_filter", "log", "preread")
_MISSING = object()
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


def normalize_config(info: PluginInfo, config: dict | None, where: str) -> dict:
    """Kong's processed plugin config: defaults in, nulls for unset optional fields, errors naming `config.<path>`."""
    try:
        return normalize_record(info.config_fields, {} if config is None else config, "config")
    except ConfigError as exc:
        raise exc.located(where) from None


def normalize_record(fields: list[dict[str, Any]], value: Any, path: str) -> dict[str, Any]:
    """Validate and complete one record against its `fields` list (`[{name: definition}, ...]`)."""
    if not isinstance(value, Mapping):
        raise ConfigError("expected a record", field=path or None)
    declared = [_field_entry(entry) for entry in fields]
    names = {name for name, _ in declared}
    for key in value:
        if key not in names:
            raise ConfigError("unknown field", field=_join(path, str(key)))
    out: dict[str, Any] = {}
    for name, fdef in declared:
        raw = value.get(name, _MISSING)
        out[name] = normalize_value(fdef, missing_value(fdef) if raw is _MISSING else raw, _join(path, name))
    return out


def missing_value(fdef: Mapping[str, Any]) -> Any:
    """Kong's `handle_missing_field`: the default, nothing for required fields, expanded records, else null."""
    if "default" in fdef:
        return copy.deepcopy(fdef["default"])
    if fdef.get("required"):
        return _MISSING
    if fdef.get("type") == "record" and fdef.get("required") is not False:
        return {}
    return None  # `required = false` records too (kong/db/schema/init.lua:1636-1656: no recursion, null)


def normalize_value(fdef: Mapping[str, Any], value: Any, path: str) -> Any:
    """Type-check one value (recursing into aggregates), then run the validators in Kong's order."""
    if value is _MISSING or (value is None and fdef.get("required")):
        raise ConfigError("required field missing", field=path)
    if value is None:
        if fdef.get("nullable") is False:
            raise ConfigError("field is not nullable", field=path)
        return None
    value = _check_type(fdef, value, path)
    err = run_validators(fdef, value)
    if err:
        raise ConfigError(err, field=path)
    return value


def _check_type(fdef: Mapping[str, Any], value: Any, path: str) -> Any:
    typ = fdef.get("type")
    if typ == "string":
        return _expect(isinstance(value, str), value, "expected a string", path)
    if typ == "boolean":
        return _expect(isinstance(value, bool), value, "expected a boolean", path)
    if typ == "number":
        return _expect(isinstance(value, int | float) and not isinstance(value, bool), value, "expected a number", path)
    if typ == "integer":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return _expect(isinstance(value, int) and not isinstance(value, bool), value, "expected an integer", path)
    if typ in ("array", "set"):
        if not isinstance(value, list):
            raise ConfigError(f"expected {'an array' if typ == 'array' else 'a set'}", field=path)
        if typ == "set":
            value = _dedupe(value)
        elements = {**fdef.get("elements", {}), "nullable": False}
        return [normalize_value(elements, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if typ == "map":
        if not isinstance(value, Mapping):
            raise ConfigError("expected a map", field=path)
        keys, values = {**fdef.get("keys", {}), "nullable": False}, {**fdef.get("values", {}), "nullable": False}
        return {
            normalize_value(keys, k, path): normalize_value(values, v, _join(path, str(k))) for k, v in value.items()
        }
    if typ == "record":
        return normalize_record(fdef.get("fields", []), value, path)
    return value  # "foreign" (and definitions without a type, rejected earlier by validate_field_def)


def _expect(ok: bool, value: Any, message: str, path: str) -> Any:
    if not ok:
        raise ConfigError(message, field=path)
    return value


def _dedupe(values: list) -> list:
    seen: list = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


def run_validators(fdef: Mapping[str, Any], value: Any) -> str | None:
    """The first failing validator's message, in Kong's `Schema.validators_order`, or None."""
    for name, check in _VALIDATORS:
        if name in fdef:
            err = check(value, fdef[name])
            if err:
                return err
    if fdef.get("type") == "string" and "len_min" not in fdef and value == "":
        return "length must be at least 1"  # Kong: "empty strings are not accepted by default"
    return None


def _num(n: Any) -> str:
    return str(int(n)) if isinstance(n, float) and n.is_integer() else str(n)


def _lua_str(v: Any) -> str:
    return "true" if v is True else "false" if v is False else _num(v)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _length_check(op: Callable[[int, int], bool], template: str) -> Callable[[Any, Any], str | None]:
    def check(value: Any, n: Any) -> str | None:
        if isinstance(value, str | list | dict) and not op(len(value), n):
            return template % n
        return None

    return check


def _match(value: Any, pattern: str) -> bool:
    return isinstance(value, str) and lua_find(value, pattern)


def _v_eq(v, want):
    return None if v == want else f"value must be {'null' if want is None else _lua_str(want)}"


def _v_ne(v, bad):
    return f"value must not be {_lua_str(bad)}" if v == bad else None


def _v_one_of(v, options):
    return None if v in options else "expected one of: " + ", ".join(_lua_str(o) for o in options)


def _v_not_one_of(v, options):
    return "must not be one of: " + ", ".join(_lua_str(o) for o in options) if v in options else None


def _v_between(v, lim):
    ok = not _is_number(v) or lim[0] <= v <= lim[1]
    return None if ok else f"value should be between {_num(lim[0])} and {_num(lim[1])}"


def _v_gt(v, n):
    return f"value must be greater than {_num(n)}" if _is_number(v) and not v > n else None


def _v_uuid(v, _):
    return None if isinstance(v, str) and _UUID.match(v) else "expected a valid UUID"


def _v_starts_with(v, prefix):
    return f"should start with: {prefix}" if isinstance(v, str) and not v.startswith(prefix) else None


def _v_match(v, pattern):
    return f"invalid value: {v}" if isinstance(v, str) and not _match(v, pattern) else None


def _v_not_match(v, pattern):
    return f"invalid value: {v}" if _match(v, pattern) else None


def _v_match_none(v, rules):
    return next((r.get("err", f"invalid value: {v}") for r in rules if _match(v, r["pattern"])), None)


def _v_match_all(v, rules):
    return next((r.get("err", f"invalid value: {v}") for r in rules if not _match(v, r["pattern"])), None)


def _v_match_any(v, arg):
    if not isinstance(v, str) or any(_match(v, p) for p in arg["patterns"]):
        return None
    return arg.get("err", f"invalid value: {v}")


def _v_contains(v, item):
    return f"expected to contain: {_lua_str(item)}" if isinstance(v, list) and item not in v else None


def _v_custom(v, fn):
    return fn(v)


_VALIDATORS: tuple[tuple[str, Callable[[Any, Any], str | None]], ...] = (
    ("eq", _v_eq),
    ("ne", _v_ne),
    ("one_of", _v_one_of),
    ("not_one_of", _v_not_one_of),
    ("uuid", _v_uuid),
    ("between", _v_between),
    ("gt", _v_gt),
    ("len_eq", _length_check(lambda n, m: n == m, "length must be %d")),
    ("len_min", _length_check(lambda n, m: n >= m, "length must be at least %d")),
    ("len_max", _length_check(lambda n, m: n <= m, "length must be at most %d")),
    ("starts_with", _v_starts_with),
    ("not_match", _v_not_match),
    ("match_none", _v_match_none),
    ("match", _v_match),
    ("match_all", _v_match_all),
    ("match_any", _v_match_any),
    ("contains", _v_contains),
    ("custom_validator", _v_custom),
)


# ---- Lua patterns ------------------------------------------------------------------------------------------------

_LUA_CLASSES = {
    "a": "A-Za-z",
    "d": "0-9",
    "l": "a-z",
    "u": "A-Z",
    "w": "A-Za-z0-9",
    "x": "0-9A-Fa-f",
    "s": r" \t\n\r\f\v",
    "p": re.escape(string.punctuation).replace("-", r"\-").replace("]", r"\]"),
    "c": r"\x00-\x1f\x7f",
    "g": r"\x21-\x7e",
}
_PATTERN_CACHE: dict[str, re.Pattern[str]] = {}


def lua_find(subject: str, pattern: str) -> bool:
    """`string.match(subject, pattern) ~= nil` for the Lua-pattern subset Kong schemas use."""
    compiled = _PATTERN_CACHE.get(pattern)
    if compiled is None:
        compiled = _PATTERN_CACHE[pattern] = re.compile(lua_pattern_to_regex(pattern), re.S)
    return compiled.search(subject) is not None


def lua_pattern_to_regex(pattern: str) -> str:
    """Translate a Lua pattern to a Python regex: classes, sets, anchors, `* + ? -` and captures (not %b, %f)."""
    out: list[str] = []
    i, n, prev_item = 0, len(pattern), False
    if pattern.startswith("^"):
        out.append("^")
        i = 1
    while i < n:
        c = pattern[i]
        if c == "%":
            out.append(_lua_escape(pattern, i))
            i, prev_item = i + 2, True
        elif c == "[":
            text, i = _lua_set(pattern, i)
            out.append(text)
            prev_item = True
        elif c == "$" and i == n - 1:
            out.append(r"\Z")
            i += 1
        elif c in "*+?" and prev_item:
            out.append(c)
            i, prev_item = i + 1, False
        elif c == "-" and prev_item:
            out.append("*?")
            i, prev_item = i + 1, False
        elif c in "()":
            out.append(c)
            i, prev_item = i + 1, False
        else:
            out.append("." if c == "." else re.escape(c))
            i, prev_item = i + 1, True
    return "".join(out)


def _lua_escape(pattern: str, i: int) -> str:
    if i + 1 >= len(pattern):
        raise ConfigError(f"malformed pattern (ends with '%'): {pattern}")
    c = pattern[i + 1]
    if c.lower() in _LUA_CLASSES:
        body = _LUA_CLASSES[c.lower()]
        return f"[{body}]" if c.islower() else f"[^{body}]"
    if c.isdigit():
        return "\\" + c
    if c.isalpha():
        raise ConfigError(f"unsupported Lua pattern item '%{c}' in: {pattern}")
    return re.escape(c)


def _lua_set(pattern: str, i: int) -> tuple[str, int]:
    j = i + 1
    parts = ["["]
    if j < len(pattern) and pattern[j] == "^":
        parts.append("^")
        j += 1
    first = True
    while j < len(pattern):
        c = pattern[j]
        if c == "]" and not first:
            parts.append("]")
            return "".join(parts), j + 1
        if c == "%" and j + 1 < len(pattern):
            e = pattern[j + 1]
            if e.lower() in _LUA_CLASSES and e.islower():
                parts.append(_LUA_CLASSES[e])
            elif e.isalpha():
                raise ConfigError(f"unsupported Lua pattern item '%{e}' inside a set in: {pattern}")
            else:
                parts.append(re.escape(e))
            j += 2
        else:
            parts.append("\\" + c if c in "\\[]^" else c)
            j += 1
        first = False
    raise ConfigError(f"malformed pattern (missing ']'): {pattern}")


# ---- plugin info and field definitions ---------------------------------------------------------------------------


def validate_plugin_info(raw: Any) -> PluginInfo:
    """Check one info object from a query command (capitalised keys) like Kong 3.x does, and build a PluginInfo."""
    if not isinstance(raw, Mapping):
        raise ConfigError("expected an object with Name, Priority, Version, Phases and Schema", where="in plugin info")
    name = raw.get("Name")
    if not isinstance(name, str) or not name:
        raise ConfigError("expected a non-empty string", where="in plugin info", field="Name")
    where = f"in plugin info of '{name}'"
    priority = raw.get("Priority")
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise ConfigError(f'Plugin "{name}" cannot be loaded because its PRIORITY field is not a valid integer number')
    version = raw.get("Version")
    if not isinstance(version, str) or not re.match(r"\d+\.\d+\.\d+", version):
        raise ConfigError(
            f'Plugin "{name}" cannot be loaded because its VERSION field does not follow the "x.y.z" format'
        )
    phases = _check_phases(raw.get("Phases"), name, where)
    schema = raw.get("Schema")
    validate_schema(schema, where)
    return PluginInfo(name=name, version=version, priority=priority, phases=phases, schema=schema)


def _check_phases(phases: Any, name: str, where: str) -> tuple[str, ...]:
    if not isinstance(phases, list) or not all(isinstance(p, str) for p in phases):
        raise ConfigError("expected an array of strings", where=where, field="Phases")
    for i, p in enumerate(phases):
        if p not in KONG_PHASES:
            raise ConfigError("expected one of: " + ", ".join(KONG_PHASES), where=where, field=f"Phases[{i}]")
    if "response" in phases and ("header_filter" in phases or "body_filter" in phases):
        raise ConfigError(f"Plugin {name} can't have both 'response' and 'header_filter' or 'body_filter' phases")
    return tuple(phases)


def validate_schema(schema: Any, where: str) -> None:
    """The plugin schema shape `{"name": .., "fields": [{"config": {"type": "record", "fields": [...]}}]}`."""
    if not isinstance(schema, Mapping) or not isinstance(schema.get("fields"), list):
        raise ConfigError("error in schema definition: no 'fields' table", where=where, field="Schema")
    if not isinstance(schema.get("name"), str):
        raise ConfigError("error in schema definition: missing attribute name", where=where, field="Schema")
    config = None
    for i, entry in enumerate(schema["fields"]):
        fname, fdef = _field_entry(entry, where, f"Schema.fields[{i}]")
        if fname == "config":
            config = fdef
        elif fname in ("route", "service", "consumer", "protocols", "consumer_group"):
            continue
        else:
            raise ConfigError("unknown field", where=where, field=f"Schema.fields[{i}].{fname}")
    if config is None or config.get("type") != "record":
        raise ConfigError("expected a 'config' field of type record", where=where, field="Schema")
    validate_field_def(config, "config", where)


def validate_field_def(fdef: Mapping[str, Any], path: str, where: str) -> None:
    """Catch typos in a field definition: unknown attributes, unknown types, missing elements/fields/keys/values."""
    for attr in fdef:
        if attr not in KNOWN_ATTRIBUTES:
            raise ConfigError(f"unknown field attribute '{attr}'", where=where, field=path)
    typ = fdef.get("type")
    if typ not in VALID_TYPES:
        raise ConfigError("invalid type: " + str(typ) if typ else "missing type", where=where, field=path)
    for attr, types in (("elements", ("array", "set")), ("keys", ("map",)), ("values", ("map",))):
        if typ in types:
            if not isinstance(fdef.get(attr), Mapping):
                raise ConfigError(f"error in schema definition: missing attribute {attr}", where=where, field=path)
            validate_field_def(fdef[attr], f"{path}.{attr}" if attr != "elements" else f"{path}[]", where)
    if typ == "record":
        if not isinstance(fdef.get("fields"), list):
            raise ConfigError("error in schema definition: missing attribute fields", where=where, field=path)
        for i, entry in enumerate(fdef["fields"]):
            name, sub = _field_entry(entry, where, f"{path}.fields[{i}]")
            validate_field_def(sub, f"{path}.{name}", where)
    if fdef.get("default") is not None:
        try:
            normalize_value(fdef, copy.deepcopy(fdef["default"]), path)
        except ConfigError as exc:
            raise ConfigError(f"invalid default: {exc.reason}", where=where, field=exc.field) from None


def _field_entry(entry: Any, where: str = "", path: str = "fields") -> tuple[str, Mapping[str, Any]]:
    if not isinstance(entry, Mapping) or len(entry) != 1:
        raise ConfigError("each field must be a one-key table {name = definition}", where=where, field=path)
    ((name, fdef),) = entry.items()
    if not isinstance(fdef, Mapping):
        raise ConfigError("expected a definition table", where=where, field=f"{path}.{name}")
    return str(name), fdef


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
