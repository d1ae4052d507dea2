"""STAND-IN ONLY. Plays the stories, characters, universes and generation services for `make run` and the tests.

Each service is a tiny REST store: `GET /<anything>/<collection>` lists, `POST` creates, `GET|PUT|PATCH|DELETE
.../<collection>/<id>` reads, replaces, updates, deletes. Records are kept per user (the `X-User-Id` header the
gateway sets), so one user never sees another's records. Every JSON answer carries `received_identity`: the identity
headers this backend received, so tests can prove what the gateway forwarded. Test hooks under `/__`:
`/__echo` (the whole request), `/__status/<code>`, `/__sleep?ms=N`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

from aiohttp import web

IDENTITY_HEADERS = ("X-User-Id", "X-User-Role", "X-Family-Id", "X-Account-Tier", "X-Content-Rating")
ANONYMOUS = "anonymous"


def identity(request: web.Request) -> dict[str, str | None]:
    return {h: request.headers.get(h) for h in IDENTITY_HEADERS}


def describe(request: web.Request, body: bytes) -> dict[str, Any]:
    return {
        "method": request.method,
        "path": request.path,
        "raw_path": request.raw_path,
        "query": request.query_string,
        "headers": dict(request.headers),
        "body": body.decode("utf-8", "replace"),
    }


class Store:
    """Records per (user, collection); ids are sequential strings."""

    def __init__(self) -> None:
        self._records: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self._ids = itertools.count(1)

    def bucket(self, user: str, collection: str) -> dict[str, dict[str, Any]]:
        return self._records.setdefault((user, collection), {})

    def new_id(self) -> str:
        return str(next(self._ids))


def problem(status: int, title: str, detail: str, service: str) -> web.Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, "service": service}
    return web.json_response(body, status=status, content_type="application/problem+json")


def split_collection(path: str) -> tuple[str, str | None]:
    """`/api/v1/stories/7` → ("stories", "7"); `/api/v1/stories` → ("stories", None). Ids are numeric."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[-1].isdigit():
        return parts[-2], parts[-1]
    return (parts[-1] if parts else "root"), None


def make_app(service: str) -> web.Application:
    store = Store()
    app = web.Application(client_max_size=4 * 1024 * 1024)

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response({"service": service, "request": describe(request, body)} | _identity(request))

    async def status(request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        return web.json_response({"service": service, "status": code}, status=code)

    async def sleep(request: web.Request) -> web.Response:
        ms = min(int(request.query.get("ms", "100")), 120_000)
        await asyncio.sleep(ms / 1000)
        return web.json_response({"service": service, "slept_ms": ms})

    async def rest(request: web.Request) -> web.Response:
        body = await request.read()
        user = request.headers.get("X-User-Id") or ANONYMOUS
        collection, record_id = split_collection(request.path)
        records = store.bucket(user, collection)
        handler = _record_handler if record_id else _collection_handler
        return handler(request, body, service, store, records, collection, record_id)

    app.router.add_route("*", "/__echo", echo)
    app.router.add_route("*", "/__echo/{tail:.*}", echo)
    app.router.add_route("*", "/__status/{code:[1-5][0-9][0-9]}", status)
    app.router.add_route("*", "/__sleep", sleep)
    app.router.add_route("*", "/{tail:.*}", rest)
    return app


def _identity(request: web.Request) -> dict[str, Any]:
    return {"received_identity": identity(request)}


def _parse(body: bytes) -> dict[str, Any] | None:
    if not body:
        return {}
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _collection_handler(request, body, service, store, records, collection, _record_id) -> web.Response:
    if request.method == "GET":
        return web.json_response({"service": service, "items": list(records.values())} | _identity(request))
    if request.method == "POST":
        data = _parse(body)
        if data is None:
            return problem(400, "Bad Request", "body must be a JSON object", service)
        record = {"id": store.new_id(), **data}
        records[record["id"]] = record
        return web.json_response({"service": service, "item": record} | _identity(request), status=201)
    return problem(405, "Method Not Allowed", f"{request.method} on a {collection} collection", service)


def _record_handler(request, body, service, _store, records, collection, record_id) -> web.Response:
    record = records.get(record_id)
    if record is None:
        return problem(404, "Not Found", f"no {collection} record {record_id} for this user", service)
    if request.method == "GET":
        return web.json_response({"service": service, "item": record} | _identity(request))
    if request.method == "DELETE":
        del records[record_id]
        return web.Response(status=204)
    if request.method in ("PUT", "PATCH"):
        data = _parse(body)
        if data is None:
            return problem(400, "Bad Request", "body must be a JSON object", service)
        new = {"id": record_id, **data} if request.method == "PUT" else {**record, **data, "id": record_id}
        records[record_id] = new
        return web.json_response({"service": service, "item": new} | _identity(request))
    return problem(405, "Method Not Allowed", f"{request.method} on a {collection} record", service)
