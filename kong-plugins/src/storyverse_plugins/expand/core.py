"""Pure expansion logic: what to fetch, how to read an answer, how to compose the story. No PDK calls, no I/O."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from storyverse_plugins.expand.schema import Config, Expansion

MAX_EXPAND_CHARS = 256
_ID = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")  # no '/', '.', '%', '?', '#': an id can only name one resource
_JSON_TYPE = re.compile(r"\Aapplication/(?:[a-z0-9.+-]+\+)?json\Z")
JSON_UTF8 = "application/json; charset=utf-8"

# Why an id was not expanded (the values of `errors` in the markers).
NOT_FOUND, FORBIDDEN, TIMEOUT, ERROR = "not_found", "forbidden", "timeout", "error"
INVALID_ID, OVER_LIMIT = "invalid_id", "over_limit"


class BadExpand(ValueError):
    """The client's expand argument is malformed or names something this route does not expand (a 400)."""


def requested(value: Any, cfg: Config) -> tuple[str, ...]:
    """The expansion names in the query argument, deduplicated in order; () when the argument is absent."""
    if value is None:
        return ()
    if not isinstance(value, str) or not value.strip(" ,"):
        raise BadExpand(f"{cfg.query_arg} needs a value, e.g. {cfg.query_arg}={_allowed(cfg)}")
    if len(value) > MAX_EXPAND_CHARS:
        raise BadExpand(f"{cfg.query_arg} is longer than {MAX_EXPAND_CHARS} characters")
    names: list[str] = []
    for token in (t.strip() for t in value.split(",")):
        if not token or token in names:
            continue
        if cfg.expansion(token) is None:
            shown = token if len(token) <= 32 and token.isprintable() else token[:32].encode("unicode_escape").decode()
            raise BadExpand(f"cannot expand {shown!r}; this resource expands: {_allowed(cfg)}")
        names.append(token)
    return tuple(names)


def _allowed(cfg: Config) -> str:
    return ",".join(e.name for e in cfg.expansions)


def valid_id(value: Any) -> str | None:
    """A referenced id as a URL path segment, or None when it is not a plain id (booleans are not integers)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if value >= 0 else None
    if isinstance(value, str) and _ID.match(value):
        return value
    return None


@dataclass(frozen=True)
class Part:
    """One requested expansion: the ids to fetch, and the references that will not be fetched (with the reason)."""

    expansion: Expansion
    many: bool
    ids: tuple[str, ...]
    rejected: tuple[tuple[str, str], ...] = ()

    def urls(self) -> tuple[str, ...]:
        return tuple(self.expansion.url_for(i) for i in self.ids)


def plan(record: Mapping[str, Any], names: Iterable[str], cfg: Config) -> tuple[Part, ...]:
    """What to fetch for `names`: valid, deduplicated ids, at most cfg.max_ids per expansion."""
    parts = []
    for name in names:
        expansion = cfg.expansion(name)
        if expansion is None:
            continue
        ref = record.get(expansion.id_field)
        many = isinstance(ref, list)
        refs = ref if many else ([] if ref is None else [ref])
        ids: list[str] = []
        rejected: list[tuple[str, str]] = []
        for item in refs:
            rid = valid_id(item)
            if rid is None:
                rejected.append((_label(item), INVALID_ID))
            elif rid in ids:
                continue
            elif len(ids) >= cfg.max_ids:
                if (rid, OVER_LIMIT) not in rejected:
                    rejected.append((rid, OVER_LIMIT))
            else:
                ids.append(rid)
        parts.append(Part(expansion, many, tuple(ids), tuple(rejected)))
    return tuple(parts)


def _label(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:64]


def fetch_list(parts: Iterable[Part]) -> tuple[str, ...]:
    """Every URL to fetch, once each, in plan order."""
    return tuple(dict.fromkeys(url for part in parts for url in part.urls()))


@dataclass(frozen=True)
class Outcome:
    """The result of one fetch: the resource, or why there is none."""

    resource: dict[str, Any] | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


TIMED_OUT = Outcome(reason=TIMEOUT)


def parse_json(raw: Any, max_bytes: int) -> Any:
    """The JSON value of a body (bytes or str), or None when it is empty, too large or not JSON."""
    if isinstance(raw, str):
        raw = raw.encode()
    if not isinstance(raw, bytes | bytearray) or not raw or len(raw) > max_bytes:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def unwrap(body: Any, envelope: str | None) -> dict[str, Any] | None:
    """The record inside a response body (the body itself without an envelope), or None when it is not an object."""
    record = body.get(envelope) if envelope is not None and isinstance(body, dict) else body
    return record if isinstance(record, dict) else None


def read_answer(status: int, raw: bytes, cfg: Config) -> Outcome:
    """Classify a service's answer to one fetch."""
    if 200 <= status < 300:
        record = unwrap(parse_json(raw, cfg.max_body_bytes), cfg.envelope_field)
        return Outcome(resource=record) if record is not None else Outcome(reason=ERROR)
    if status in (404, 410):
        return Outcome(reason=NOT_FOUND)
    if status in (401, 403):
        return Outcome(reason=FORBIDDEN)
    return Outcome(reason=ERROR)


def compose(
    body: Any, record: dict[str, Any], parts: Iterable[Part], outcomes: Mapping[str, Outcome], cfg: Config
) -> tuple[Any, bool]:
    """The story body with each expansion in its target field and the markers; True when nothing failed.

    A fetch missing from `outcomes` did not come back within the budget: it counts as a timeout.
    """
    out = dict(record)
    markers: dict[str, Any] = {}
    for part in parts:
        errors = dict(part.rejected)
        found = []
        for rid, url in zip(part.ids, part.urls(), strict=True):
            outcome = outcomes.get(url, TIMED_OUT)
            if outcome.ok:
                found.append(outcome.resource)
            else:
                errors[rid] = outcome.reason
        out[part.expansion.target_field] = found if part.many else (found[0] if found else None)
        status = "ok" if not errors else ("partial" if found else "failed")
        markers[part.expansion.name] = {"status": status, "errors": errors} if errors else {"status": status}
    out[cfg.markers_field] = markers
    complete = all(m["status"] == "ok" for m in markers.values())
    if cfg.envelope_field is not None:
        return {**body, cfg.envelope_field: out}, complete
    return out, complete


def success(status: Any) -> bool:
    """Only a 2xx answer with content is composed; errors go out as the service sent them."""
    return isinstance(status, int) and not isinstance(status, bool) and 200 <= status < 300 and status != 204


def composable(headers: Any) -> bool:
    """Only an uncompressed JSON body is composed; anything else goes out as the service sent it."""
    if not isinstance(headers, dict):
        return False
    content_type = first(headers, "content-type")
    media = (content_type or "").split(";", 1)[0].strip().lower()
    encoding = (first(headers, "content-encoding") or "identity").strip().lower()
    return bool(_JSON_TYPE.match(media)) and encoding == "identity"


def first(headers: Mapping[str, Any], name: str) -> str | None:
    """One header value from a Kong header table (lower-case names; a value or a list of values)."""
    value = headers.get(name)
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, str) else None


def forwarded(request_headers: Any, names: Iterable[str]) -> dict[str, str]:
    """The configured headers of the request as the upstream received them (identity set by sv-jwt, request id)."""
    if not isinstance(request_headers, dict):
        return {}
    out = {}
    for name in names:
        value = first(request_headers, name.lower())
        if value is not None:
            out[name] = value
    return out


def response_headers(upstream_headers: Mapping[str, Any], data: bytes, complete: bool) -> dict[str, str]:
    """Headers of the composed answer: JSON, a validator for the new representation, and no caching of a degraded one.

    (Content-Length is set by kong.response.exit.)
    """
    headers = {"Content-Type": JSON_UTF8}
    if first(upstream_headers, "etag") is not None:
        headers["ETag"] = 'W/"' + hashlib.sha256(data).hexdigest()[:32] + '"'
    if not complete:
        headers["Cache-Control"] = "no-store"
    return headers
