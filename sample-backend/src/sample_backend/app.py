"""STAND-IN ONLY. Plays the stories, characters, universes and generation services for `make run` and the tests.

Each service is a tiny REST store: `GET /<anything>/<collection>` lists, `POST` creates, `GET|PUT|PATCH|DELETE
.../<collection>/<id>` reads, replaces, updates, deletes. It keeps the ownership contract of
docs/backend-contract.md: records belong to the FAMILY (`X-Family-Id`), a child sees only records rated at or below
its `X-Content-Rating`, a request without the identity headers is refused (401), and another family's record, like a
record a child may not see, does not exist (404). Every JSON answer carries `received_identity`: the identity headers
this backend received, so tests can prove what the gateway forwarded. Test hooks under `/__`: `/__echo` (the whole
request), `/__status/<code>`, `/__sleep?ms=N`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass
from typing import Any

import jsonschema
from aiohttp import web
from storyverse_contracts.identity import IDENTITY_HEADERS as HEADER_OF
from storyverse_contracts.ratings import CONTENT_RATINGS

from sample_backend.schemas import BODIES

# The headers the gateway sets (storyverse_contracts.identity); ratings mildest first (docs/backend-contract.md).
IDENTITY_HEADERS = tuple(HEADER_OF.values())
_USER, _ROLE, _FAMILY, _RATING = (HEADER_OF[claim] for claim in ("sub", "role", "family_id", "content_rating"))


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
    """Records per (family, collection); ids are sequential strings, unique across families."""

    def __init__(self) -> None:
        self._records: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self._ids = itertools.count(1)

    def bucket(self, family: str, collection: str) -> dict[str, dict[str, Any]]:
        return self._records.setdefault((family, collection), {})

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
        caller = Caller.of(request)
        if caller is None:
            return problem(401, "Unauthorized", "no gateway identity (X-Family-Id, X-User-Id, X-User-Role)", service)
        collection, record_id = split_collection(request.path)
        records = store.bucket(caller.family, collection)
        handler = _record_handler if record_id else _collection_handler
        return handler(request, body, service, store, records, collection, record_id, caller)

    app.router.add_route("*", "/__echo", echo)
    app.router.add_route("*", "/__echo/{tail:.*}", echo)
    app.router.add_route("*", "/__status/{code:[1-5][0-9][0-9]}", status)
    app.router.add_route("*", "/__sleep", sleep)
    app.router.add_route("*", "/{tail:.*}", rest)
    return app


@dataclass(frozen=True)
class Caller:
    """The gateway's identity headers; `rating` is the strongest rating this caller may see (None: no cap)."""

    user: str
    role: str
    family: str
    rating: str | None

    @classmethod
    def of(cls, request: web.Request) -> Caller | None:
        """None when the identity is missing or unreadable: the contract says refuse, never guess."""
        user, role, family = (request.headers.get(h) for h in (_USER, _ROLE, _FAMILY))
        rating = request.headers.get(_RATING)
        if not (user and role and family):
            return None
        if rating is not None and rating not in CONTENT_RATINGS:
            return None
        if role == "child" and rating is None:
            return None  # a child without a rating would see everything: fail closed
        return cls(user, role, family, rating)

    def may_see(self, record: dict[str, Any]) -> bool:
        if self.rating is None:
            return True
        return CONTENT_RATINGS.index(record["content_rating"]) <= CONTENT_RATINGS.index(self.rating)

    def rate(self, asked: Any) -> str:
        """The rating of a record this caller writes: what it asks for, never above what it may see itself."""
        rating = asked if asked in CONTENT_RATINGS else (self.rating or CONTENT_RATINGS[0])
        if self.rating is not None and not self.may_see({"content_rating": rating}):
            rating = self.rating
        return rating


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


def _invalid(
    request: web.Request, body: bytes, service: str, collection: str
) -> tuple[dict | None, web.Response | None]:
    """The body as a dict, or the problem answer: 400 not a JSON object, 422 against the document's schema."""
    data = _parse(body)
    if data is None:
        return None, problem(400, "Bad Request", "body must be a JSON object", service)
    schema = BODIES.get((collection, request.method))
    errors = [] if schema is None else [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(data)]
    if "content_rating" in data and data["content_rating"] not in CONTENT_RATINGS:
        errors.append(f"content_rating must be one of {', '.join(CONTENT_RATINGS)}")
    if errors:
        return None, problem(422, "Unprocessable Content", "; ".join(errors)[:500], service)
    return data, None


def _collection_handler(request, body, service, store, records, collection, _record_id, caller) -> web.Response:
    if request.method == "GET":
        items = [r for r in records.values() if caller.may_see(r)]
        return web.json_response({"service": service, "items": items} | _identity(request))
    if request.method == "POST":
        data, refused = _invalid(request, body, service, collection)
        if refused is not None:
            return refused
        record = {**data, "id": store.new_id(), "content_rating": caller.rate(data.get("content_rating")),
                  "created_by": caller.user}  # fmt: skip
        records[record["id"]] = record
        return web.json_response({"service": service, "item": record} | _identity(request), status=201)
    return problem(405, "Method Not Allowed", f"{request.method} on a {collection} collection", service)


def _record_handler(request, body, service, _store, records, collection, record_id, caller) -> web.Response:
    record = records.get(record_id)
    if record is None or not caller.may_see(record):
        return problem(404, "Not Found", f"no {collection} record {record_id} in this family", service)
    if request.method == "GET":
        return web.json_response({"service": service, "item": record} | _identity(request))
    if request.method == "DELETE":
        del records[record_id]
        return web.Response(status=204)
    if request.method in ("PUT", "PATCH"):
        data, refused = _invalid(request, body, service, collection)
        if refused is not None:
            return refused
        new = data if request.method == "PUT" else {**record, **data}
        asked = new.get("content_rating", record["content_rating"])
        new = {**new, "id": record_id, "content_rating": caller.rate(asked), "created_by": record["created_by"]}
        records[record_id] = new
        return web.json_response({"service": service, "item": new} | _identity(request))
    return problem(405, "Method Not Allowed", f"{request.method} on a {collection} record", service)
