"""What the docs page shows of a JSON Schema, from the document's own schemas: one row per field (type, required,
constraints, description; nested objects as `a.b`, arrays of objects as `a[].b`) and an example value built from
each schema's `examples`/`example`/`default`/`enum`, its format and its constraints."""

from __future__ import annotations

import re
from typing import Any

MAX_DEPTH = 4  # nested levels listed as rows
EXAMPLE_DEPTH = 8  # nested levels filled in examples
FORMAT_EXAMPLES = {
    "email": "parent@example.com",
    "uuid": "3f2b8c1e-6a4e-4f6b-9d7a-2f1e5c3b9a10",
    "date-time": "2026-12-24T19:30:00Z",
    "date": "2026-12-24",
    "uri": "https://app.storyverse.example/callback",
    "uri-reference": "/api/v1/stories/42",
    "password": "a long and quiet bedtime password",
}
NAME_EXAMPLES: dict[str, Any] = {
    "access_token": "eyJhbGciOiJFUzI1NiIsImtpZCI6IjEifQ...",
    "refresh_token": "rt_3q2-Zk...",
    "id_token": "eyJhbGciOiJFUzI1NiIsImtpZCI6IjEifQ...",
    "request_id": "6f1c0d2e9a7b4c3d8e5f1a2b3c4d5e6f",
    "expires_in": 900,
}
UUID_EXAMPLE = FORMAT_EXAMPLES["uuid"]


def resolve(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """Follow $refs and merge allOf parts into one object schema (properties and required lists joined)."""
    seen = 0
    while "$ref" in schema and seen < MAX_DEPTH:
        schema, seen = schemas.get(schema["$ref"].rsplit("/", 1)[1], {}), seen + 1
    if "allOf" not in schema:
        return schema
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    for part in schema["allOf"]:
        part = resolve(part, schemas)
        merged.setdefault("properties", {}).update(part.get("properties", {}))
        merged["required"] = [*merged.get("required", []), *part.get("required", [])]
        merged.setdefault("type", part.get("type"))
    return merged


def _types(schema: dict[str, Any]) -> list[str]:
    kind = schema.get("type")
    return kind if isinstance(kind, list) else [kind] if kind else []


def type_name(schema: dict[str, Any], schemas: dict[str, Any]) -> str:
    if "$ref" in schema:
        return "object " + schema["$ref"].rsplit("/", 1)[1]
    if "enum" in schema or "const" in schema:
        return "string" if all(isinstance(v, str) for v in schema.get("enum", [schema.get("const")])) else "value"
    if "oneOf" in schema or "anyOf" in schema:
        return " or ".join(type_name(s, schemas) for s in schema.get("oneOf") or schema["anyOf"])
    kinds = [k for k in _types(schema) if k != "null"] or ["any"]
    if kinds == ["array"]:
        return "array of " + type_name(schema.get("items", {}), schemas)
    return " or ".join(kinds)


def _range(low: Any, high: Any, unit: str = "") -> str | None:
    if low is None and high is None:
        return None
    if high is None:
        return f"at least {low}{unit}"
    if low is None:
        return f"at most {high}{unit}"
    return f"{low}–{high}{unit}"


def constraints(schema: dict[str, Any]) -> list[str]:
    """The validation keywords of one schema, in words."""
    out = []
    length = _range(schema.get("minLength"), schema.get("maxLength"), " characters")
    if length:
        out.append(f"length {length}")
    value = _range(schema.get("minimum"), schema.get("maximum"))
    if value:
        out.append(value)
    items = _range(schema.get("minItems"), schema.get("maxItems"), " items")
    if items:
        out.append(items)
    if "enum" in schema:
        out.append("one of " + ", ".join(map(str, schema["enum"])))
    if "const" in schema:
        out.append(f"always {schema['const']}")
    if "format" in schema:
        out.append(f"format {schema['format']}")
    if "pattern" in schema:
        out.append(f"pattern {schema['pattern']}")
    if "default" in schema:
        out.append(f"default {schema['default']}")
    if "null" in _types(schema):
        out.append("may be null")
    return out


def rows(schema: dict[str, Any], schemas: dict[str, Any], prefix: str = "", depth: int = 0) -> list[dict[str, Any]]:
    """One row per field: name (dotted for nested objects), type, required, constraints, description."""
    schema = resolve(schema, schemas)
    out: list[dict[str, Any]] = []
    required = set(schema.get("required", []))
    for name, prop in (schema.get("properties") or {}).items():
        target = resolve(prop, schemas)
        described = prop.get("description") or target.get("description", "")
        out.append({"name": prefix + name, "type": type_name(prop, schemas), "required": name in required,
                    "constraints": constraints(target), "description": described})  # fmt: skip
        if depth >= MAX_DEPTH:
            continue
        if target.get("properties"):
            out += rows(target, schemas, f"{prefix}{name}.", depth + 1)
        items = resolve(target.get("items", {}), schemas) if "array" in _types(target) else {}
        if items.get("properties"):
            out += rows(items, schemas, f"{prefix}{name}[].", depth + 1)
    return out


PATTERN_CANDIDATES = ("42", "1234", "123456", "a1b2-c3d4-e5f6", "example", "example-1")


def _fits(text: str, schema: dict[str, Any]) -> bool:
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    if len(text) < low or (high is not None and len(text) > high):
        return False
    try:
        return "pattern" not in schema or re.search(schema["pattern"], text) is not None
    except re.error:  # an ECMA-262 construct Python's re lacks: no check
        return True


def _string(schema: dict[str, Any], name: str) -> str:
    """A plausible string that fits the schema's length and pattern: by name, format, then simple candidates."""
    text = name.replace("_", " ") if name else "text"
    while len(text) < schema.get("minLength", 0):
        text += " " + text
    candidates = [NAME_EXAMPLES.get(name), FORMAT_EXAMPLES.get(schema.get("format", ""))]
    if name == "id" or name.endswith("_id"):
        candidates.append(UUID_EXAMPLE)
    candidates += [text, name, *PATTERN_CANDIDATES]
    for candidate in candidates:
        if isinstance(candidate, str) and candidate and _fits(candidate, schema):
            return candidate
    high = schema.get("maxLength")
    return text[:high] if high else text


def _number(schema: dict[str, Any]) -> int | float:
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None:
        return low
    return min(1, high) if high is not None else 1


def example(schema: dict[str, Any], schemas: dict[str, Any], name: str = "", depth: int = 0) -> Any:
    """A value that satisfies `schema` (its own example when it has one)."""
    schema = resolve(schema, schemas)
    for key in ("examples", "example", "const", "default", "enum"):
        if key in schema:
            value = schema[key]
            return value[0] if key in ("examples", "enum") else value
    if "oneOf" in schema or "anyOf" in schema:
        return example((schema.get("oneOf") or schema["anyOf"])[0], schemas, name, depth)
    kinds = [k for k in _types(schema) if k != "null"] or (["object"] if "properties" in schema else ["string"])
    if kinds[0] == "object":
        if depth >= EXAMPLE_DEPTH:
            return {}
        props = dict(schema.get("properties") or {})
        props.update({k: {"type": "string"} for k in schema.get("required", []) if k not in props})
        return {k: example(v, schemas, k, depth + 1) for k, v in props.items()}
    if kinds[0] == "array":
        return [example(schema.get("items", {}), schemas, name, depth + 1)] if depth < EXAMPLE_DEPTH else []
    if kinds[0] in ("integer", "number"):
        return NAME_EXAMPLES[name] if isinstance(NAME_EXAMPLES.get(name), int) else _number(schema)
    if kinds[0] == "boolean":
        return True
    return _string(schema, name)
