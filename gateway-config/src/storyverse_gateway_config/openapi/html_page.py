"""The browsable API page (docs/openapi/index.html): static HTML, no script, nothing from elsewhere.

Generated from the OpenAPI document itself: each operation's parameters, its request body and its success responses
as field tables (type, required, constraints, description) with an example built from the same schemas
(`schema_view`), and the one error format once. Descriptions' Markdown (`code`, **bold**) becomes HTML.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

from storyverse_gateway_config.openapi import schema_view

STYLE = """
body{font:15px/1.5 system-ui,sans-serif;margin:0 auto;max-width:980px;padding:1rem 1.5rem;color:#1d2330}
h1{margin-bottom:.2rem}h2{border-bottom:2px solid #dde;margin-top:2rem}code{background:#f3f3f8;padding:0 .25rem}
details{border:1px solid #dde;border-radius:6px;margin:.4rem 0;padding:.3rem .7rem}
summary{cursor:pointer}.m{display:inline-block;min-width:4.2rem;font-weight:700;font-family:monospace}
.GET{color:#1a6}.POST{color:#26c}.PUT,.PATCH{color:#a60}.DELETE{color:#c33}.pub{color:#777;font-size:.85em}
table{border-collapse:collapse;margin:.3rem 0}td,th{border:1px solid #e3e3ea;padding:.15rem .5rem;text-align:left}
pre{background:#f6f6fa;padding:.6rem;overflow:auto}
"""
JSON_MEDIA = ("application/json", "application/problem+json")


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _inline(text: Any) -> str:
    """Escaped text with its Markdown `code` and **bold** as HTML (never a literal backtick)."""
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", _e(text))
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def _constraint(text: str) -> str:
    if text.startswith("pattern "):
        return f"pattern <code>{_e(text.removeprefix('pattern '))}</code>"
    return _e(text)


def _fields(schema: dict[str, Any], schemas: dict[str, Any]) -> list[str]:
    rows = schema_view.rows(schema, schemas)
    if not rows:
        return []
    out = ["<table><tr><th>field</th><th>type</th><th>required</th><th>constraints</th><th>description</th></tr>"]
    out += [
        f"<tr><td><code>{_e(r['name'])}</code></td><td>{_e(r['type'])}</td><td>{'yes' if r['required'] else ''}</td>"
        f"<td>{'; '.join(map(_constraint, r['constraints']))}</td><td>{_inline(r['description'])}</td></tr>"
        for r in rows
    ]
    return [*out, "</table>"]


def _example(schema: dict[str, Any], schemas: dict[str, Any]) -> list[str]:
    value = schema_view.example(schema, schemas)
    return ["<p>Example:</p>", f"<pre>{_e(json.dumps(value, indent=2, ensure_ascii=False))}</pre>"]


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
    out += [f"<p>{_inline(para.replace(chr(10), ' '))}</p>" for para in doc["info"]["description"].split("\n\n")]
    return out


def _errors(doc: dict[str, Any]) -> list[str]:
    """The one error format, once: the Problem document's fields and an example."""
    schemas = doc["components"]["schemas"]
    problem = {"$ref": "#/components/schemas/Problem"}
    out = ['<h2 id="errors">Errors</h2>', f"<p>{_inline(schemas['Problem'].get('description', ''))}</p>"]
    return out + _fields(problem, schemas) + _example(problem, schemas)


def _parameters(op: dict[str, Any], schemas: dict[str, Any]) -> list[str]:
    params = op.get("parameters", [])
    if not params:
        return []
    out = ["<table><tr><th>parameter</th><th>in</th><th>required</th><th>constraints</th><th>description</th></tr>"]
    for p in params:
        schema = schema_view.resolve(p.get("schema", {}), schemas)
        out.append(
            f"<tr><td><code>{_e(p['name'])}</code></td><td>{_e(p['in'])}</td>"
            f"<td>{'yes' if p.get('required') else 'no'}</td>"
            f"<td>{'; '.join(map(_constraint, schema_view.constraints(schema)))}</td>"
            f"<td>{_inline(p.get('description', ''))}</td></tr>"
        )
    return [*out, "</table>"]


def _request_body(op: dict[str, Any], schemas: dict[str, Any]) -> list[str]:
    out = []
    for media, spec in op.get("requestBody", {}).get("content", {}).items():
        out.append(f"<p>Request body (<code>{_e(media)}</code>):</p>")
        out += _fields(spec.get("schema", {}), schemas)
        if media in JSON_MEDIA or media.endswith("x-www-form-urlencoded"):
            out += _example(spec.get("schema", {}), schemas)
    return out


def _responses(op: dict[str, Any], doc: dict[str, Any]) -> list[str]:
    """The status table, then each success response's JSON body (errors are all the one Problem format)."""
    responses, schemas = doc["components"]["responses"], doc["components"]["schemas"]
    out = ["<table><tr><th>status</th><th>meaning</th></tr>"]
    bodies = []
    for status, resp in op["responses"].items():
        if "$ref" in resp:
            resp = responses[resp["$ref"].rsplit("/", 1)[1]]
        out.append(f"<tr><td>{_e(status)}</td><td>{_inline(resp.get('description', ''))}</td></tr>")
        spec = resp.get("content", {}).get("application/json")
        if status.startswith("2") and spec and spec.get("schema"):
            bodies += [f"<p>Response {_e(status)} body (<code>application/json</code>):</p>"]
            bodies += _fields(spec["schema"], schemas) + _example(spec["schema"], schemas)
    return [*out, "</table>", *bodies]


def _operation(doc: dict[str, Any], method: str, path: str, op: dict[str, Any]) -> list[str]:
    public = op.get("security") == [] or (op.get("security") and {} in op["security"])
    badge = '<span class="pub">public</span>' if public else ""
    schemas = doc["components"]["schemas"]
    paragraphs = [_inline(p.replace("\n", " ")) for p in op.get("description", "").split("\n\n")]
    out = [
        f'<details id="{_e(op["operationId"])}"><summary><span class="m {method}">{method}</span> '
        f"<code>{_e(path)}</code> {_inline(op.get('summary', ''))} {badge}</summary>",
        "<p>" + "</p><p>".join(paragraphs) + "</p>",
    ]
    out += _parameters(op, schemas) + _request_body(op, schemas) + _responses(op, doc)
    return [*out, "</details>"]


def render_html(doc: dict[str, Any]) -> str:
    """The page: the API's description and error format, then every operation grouped by tag (a <details> each)."""
    by_tag: dict[str, list[tuple[str, str, dict]]] = {t["name"]: [] for t in doc["tags"]}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            by_tag[op["tags"][0]].append((method.upper(), path, op))
    out = _head(doc)
    links = [f'<a href="#{_e(t)}">{_e(t)}</a>' for t in by_tag] + ['<a href="#errors">Errors</a>']
    out.append("<nav><p>" + " · ".join(links) + "</p></nav>")
    out += _errors(doc)
    for tag, ops in by_tag.items():
        out.append(f'<h2 id="{_e(tag)}">{_e(tag)}</h2>')
        for method, path, op in ops:
            out += _operation(doc, method, path, op)
    out.append("</body></html>")
    return "\n".join(out) + "\n"
