"""The browsable API page (docs/openapi/index.html): static HTML, no script, nothing from elsewhere."""

from __future__ import annotations

import html
import re
from typing import Any

STYLE = """
body{font:15px/1.5 system-ui,sans-serif;margin:0 auto;max-width:980px;padding:1rem 1.5rem;color:#1d2330}
h1{margin-bottom:.2rem}h2{border-bottom:2px solid #dde;margin-top:2rem}code{background:#f3f3f8;padding:0 .25rem}
details{border:1px solid #dde;border-radius:6px;margin:.4rem 0;padding:.3rem .7rem}
summary{cursor:pointer}.m{display:inline-block;min-width:4.2rem;font-weight:700;font-family:monospace}
.GET{color:#1a6}.POST{color:#26c}.PUT,.PATCH{color:#a60}.DELETE{color:#c33}.pub{color:#777;font-size:.85em}
table{border-collapse:collapse;margin:.3rem 0}td,th{border:1px solid #e3e3ea;padding:.15rem .5rem;text-align:left}
pre{background:#f6f6fa;padding:.6rem;overflow:auto}
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _schema_rows(schema: dict[str, Any], schemas: dict[str, Any], depth: int = 0) -> list[tuple[str, str, bool]]:
    """(field, type, required) of an object schema, through $ref and allOf."""
    if depth > 4:
        return []
    if "$ref" in schema:
        return _schema_rows(schemas.get(schema["$ref"].rsplit("/", 1)[1], {}), schemas, depth + 1)
    rows: list[tuple[str, str, bool]] = []
    for part in schema.get("allOf", []):
        rows += _schema_rows(part, schemas, depth + 1)
    required = set(schema.get("required", []))
    for name, prop in (schema.get("properties") or {}).items():
        kind = prop.get("type") or ("ref: " + prop["$ref"].rsplit("/", 1)[1] if "$ref" in prop else "any")
        if kind == "array":
            items = prop.get("items", {})
            kind = "array of " + (items.get("type") or items.get("$ref", "any").rsplit("/", 1)[-1])
        if "enum" in prop:
            kind = " | ".join(map(str, prop["enum"]))
        rows.append((name, str(kind), name in required))
    return rows


def _head(doc: dict[str, Any]) -> list[str]:
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(doc['info']['title'])}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{_e(doc['info']['title'])} <small>{_e(doc['info']['version'])}</small></h1>",
        f"<p>{_e(doc['info']['summary'])} The machine-readable document: "
        '<a href="openapi.json">openapi.json</a> (OpenAPI 3.1).</p>',
    ]
    for para in doc["info"]["description"].split("\n\n"):
        text = _e(para.replace("\n", " "))
        text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
        out.append("<p>" + re.sub(r"`(.+?)`", r"<code>\1</code>", text) + "</p>")
    return out


def _parameters(op: dict[str, Any]) -> list[str]:
    params = op.get("parameters", [])
    if not params:
        return []
    out = ["<table><tr><th>parameter</th><th>in</th><th>required</th></tr>"]
    out += [
        f"<tr><td><code>{_e(p['name'])}</code></td><td>{_e(p['in'])}</td>"
        f"<td>{'yes' if p.get('required') else 'no'}</td></tr>"
        for p in params
    ]
    return [*out, "</table>"]


def _request_body(op: dict[str, Any], schemas: dict[str, Any]) -> list[str]:
    out = []
    for media, spec in op.get("requestBody", {}).get("content", {}).items():
        rows = _schema_rows(spec.get("schema", {}), schemas)
        out.append(f"<p>Request body (<code>{_e(media)}</code>):</p>")
        out.append("<table><tr><th>field</th><th>type</th><th>required</th></tr>")
        out += [
            f"<tr><td><code>{_e(n)}</code></td><td>{_e(t)}</td><td>{'yes' if r else ''}</td></tr>" for n, t, r in rows
        ]
        out.append("</table>")
    return out


def _operation(doc: dict[str, Any], method: str, path: str, op: dict[str, Any]) -> list[str]:
    public = op.get("security") == [] or (op.get("security") and {} in op["security"])
    badge = '<span class="pub">public</span>' if public else ""
    out = [
        f'<details id="{_e(op["operationId"])}"><summary><span class="m {method}">{method}</span> '
        f"<code>{_e(path)}</code> {_e(op.get('summary', ''))} {badge}</summary>",
        "<p>" + _e(op.get("description", "")).replace("\n\n", "</p><p>") + "</p>",
    ]
    out += _parameters(op)
    out += _request_body(op, doc["components"]["schemas"])
    out.append("<table><tr><th>status</th><th>meaning</th></tr>")
    responses = doc["components"]["responses"]
    for status, resp in op["responses"].items():
        if "$ref" in resp:
            resp = responses[resp["$ref"].rsplit("/", 1)[1]]
        out.append(f"<tr><td>{_e(status)}</td><td>{_e(resp.get('description', ''))}</td></tr>")
    out.append("</table></details>")
    return out


def render_html(doc: dict[str, Any]) -> str:
    """The page: the API's description, then every operation grouped by tag (a <details> each)."""
    by_tag: dict[str, list[tuple[str, str, dict]]] = {t["name"]: [] for t in doc["tags"]}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            by_tag[op["tags"][0]].append((method.upper(), path, op))
    out = _head(doc)
    out.append("<nav><p>" + " · ".join(f'<a href="#{_e(t)}">{_e(t)}</a>' for t in by_tag) + "</p></nav>")
    for tag, ops in by_tag.items():
        out.append(f'<h2 id="{_e(tag)}">{_e(tag)}</h2>')
        for method, path, op in ops:
            out += _operation(doc, method, path, op)
    out.append("</body></html>")
    return "\n".join(out) + "\n"
