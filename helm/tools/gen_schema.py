"""Generate values.schema.json from the `## @param` lines of a chart's values.yaml (bitnami's convention).

    python helm/tools/gen_schema.py              # write helm/storyverse/values.schema.json
    python helm/tools/gen_schema.py --check      # exit 1 if the file is stale or a key is undocumented

A line reads `## @param <dotted.key> [modifiers] description`. The type comes from the default value unless a
modifier says otherwise: `[string]`, `[integer|string]`, `[array]`, `[object]`, `[nullable]`, `[enum: a|b]`.
A documented key whose value is a mapping is free-form (annotations, resources...); every other mapping is a
section whose keys must all be documented, and the schema closes it (`additionalProperties: false`) so a typo in
a values file fails with Helm's schema error instead of being silently ignored.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parent.parent / "storyverse"
PARAM = re.compile(r"^\s*## @param (?P<key>[\w.-]+)\s+(?:\[(?P<mods>[^\]]*)\]\s*)?(?P<desc>.*)$")
TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}


class DocError(Exception):
    """values.yaml and its @param lines disagree."""


def parse_params(text: str) -> dict[str, tuple[list[str], str]]:
    params: dict[str, tuple[list[str], str]] = {}
    for line in text.splitlines():
        m = PARAM.match(line)
        if m:
            if m["key"] in params:
                raise DocError(f"@param {m['key']} is documented twice")
            mods = [x.strip() for x in (m["mods"] or "").split(",") if x.strip()]
            params[m["key"]] = (mods, m["desc"].strip())
    return params


def leaf_schema(value: Any, mods: list[str], desc: str) -> dict[str, Any]:
    schema: dict[str, Any] = {"description": desc}
    types = [TYPES[type(value)]] if value is not None else []
    for mod in mods:
        if mod.startswith("enum:"):
            schema["enum"] = [x.strip() for x in mod[5:].split("|")]
        elif mod == "nullable":
            types.append("null")
        else:
            types = [*mod.split("|"), *(["null"] if "null" in types else [])]
    if not types:
        raise DocError(f"cannot infer the type of a null default: add a type modifier ({desc!r})")
    schema["type"] = types[0] if len(types) == 1 else types
    if value is not None:
        schema["default"] = value
    return schema


def build(values: dict[str, Any], params: dict[str, tuple[list[str], str]], prefix: str = "") -> dict[str, Any]:
    props: dict[str, Any] = {}
    for key, value in values.items():
        path = f"{prefix}{key}"
        if path in params:
            props[key] = leaf_schema(value, *params.pop(path))
        elif isinstance(value, dict) and value:
            props[key] = build(value, params, f"{path}.")
        else:
            raise DocError(f"values key {path} has no ## @param line")
    return {"type": "object", "additionalProperties": False, "properties": props}


def generate(chart: Path = CHART) -> str:
    text = (chart / "values.yaml").read_text()
    params = parse_params(text)
    schema = build(yaml.safe_load(text) or {}, params)
    if params:
        raise DocError(f"@param for keys missing from values.yaml: {', '.join(sorted(params))}")
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", "title": f"{chart.name} values", **schema}
    return json.dumps(schema, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if values.schema.json is stale")
    parser.add_argument("--chart", type=Path, default=CHART)
    args = parser.parse_args(argv)
    try:
        schema = generate(args.chart)
    except DocError as exc:
        print(f"gen_schema: {exc}", file=sys.stderr)
        return 1
    target = args.chart / "values.schema.json"
    if args.check:
        if not target.exists() or target.read_text() != schema:
            print(f"gen_schema: {target} is stale; run python helm/tools/gen_schema.py", file=sys.stderr)
            return 1
        return 0
    target.write_text(schema)
    return 0


if __name__ == "__main__":
    sys.exit(main())
