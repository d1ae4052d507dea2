"""sv-rbac config: Kong schema DSL (forwarded as config.fields) and the parsed, validated Config.

Kong checks types and `one_of`; the cross-field rules (deny by default, reachable rules, known scale values...) live
in `parse_config`, which `Plugin.__init__` calls once per configuration: a bad config raises, StartInstance fails and
Kong answers 500 on the route (fail closed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from storyverse_contracts.identity import ROLES
from storyverse_contracts.ratings import AGE_BANDS, CONTENT_RATINGS

from storyverse_plugins.common.schema_fields import schema_field

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")
KINDS = ("text", "image", "audio")
OWNER_KINDS = ("family", "child", "account")
DEFAULT_AGE_BANDS = AGE_BANDS
DEFAULT_CONTENT_RATINGS = CONTENT_RATINGS

_CAPTURE = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
_HEADER = re.compile(r"\A[A-Za-z0-9-]{1,64}\Z")
_SCALE_VALUE = re.compile(r"\A[A-Za-z0-9_+.-]{1,16}\Z")


_RULE = {
    "type": "record",
    "description": "One access rule: which roles may use which methods. The first rule naming a method wins.",
    "fields": (
        schema_field(
            "methods",
            "HTTP methods this rule covers; leave empty for every method (a catch-all, which must be the last rule).",
            "array",
            elements={"type": "string", "one_of": list(METHODS)},
        ),
        schema_field(
            "roles",
            "Roles allowed on these methods (parent, child, admin); any other role is refused with forbidden_role.",
            "array",
            required=True,
            len_min=1,
            elements={"type": "string", "one_of": list(ROLES)},
        ),
    ),
}

_OWNED = {
    "type": "record",
    "description": "A named URI capture that names a family or an account, and must belong to the caller's family.",
    "fields": (
        schema_field("name", "Name of the regex route's named capture, e.g. child_id.", "string", required=True),
        schema_field(
            "kind",
            "What the capture names: `family` (must equal the family_id claim), `child` (a parent: one of the "
            "`children` claim; a child: itself), `account` (the caller itself, or for a parent one of its children).",
            "string",
            required=True,
            one_of=list(OWNER_KINDS),
        ),
        schema_field(
            "optional",
            "Skip the check when this path has no such capture (a route whose paths mix a list and an item); "
            "otherwise a missing capture is a configuration error and the request is refused with a 500.",
            "boolean",
            default=False,
        ),
    ),
}

Schema = (
    schema_field(
        "public",
        "Anonymous callers (no verified identity) are let through; otherwise they get a 401 (deny by default). "
        "Identified callers are still checked against the rules.",
        "boolean",
        default=False,
        required=True,
    ),
    schema_field(
        "rules",
        "Roles allowed per method, first match wins; a method no rule names is refused. Required unless public.",
        "array",
        elements=_RULE,
    ),
    schema_field(
        "admin_override",
        "Admins pass every check of this route (roles, ownership, child and content rules).",
        "boolean",
        default=False,
        required=True,
    ),
    schema_field(
        "owned_captures",
        "URI captures that must belong to the caller's family (no cross-family access, BOLA).",
        "array",
        elements=_OWNED,
    ),
    schema_field(
        "child_denied_methods",
        "Methods a child may never use here, whatever the rules say.",
        "array",
        default=["DELETE"],
        elements={"type": "string", "one_of": list(METHODS)},
    ),
    schema_field(
        "enforce_hours",
        "Refuse children outside the `allowed_hours` claim, read in the family's time zone (`tz` claim); a child "
        "token without a readable window or zone is refused.",
        "boolean",
        default=True,
        required=True,
    ),
    schema_field(
        "generation_kind",
        "The generation kind of this route (text, image, audio): a child needs it in the `features` claim.",
        "string",
        one_of=list(KINDS),
    ),
    schema_field(
        "kind_capture",
        "Name of the named URI capture that holds the generation kind (instead of generation_kind).",
        "string",
    ),
    schema_field(
        "min_age_band",
        "Children below this age band (see age_bands) are refused with age_restricted.",
        "string",
    ),
    schema_field(
        "min_content_rating",
        "The route's content needs at least this rating: children allowed less are refused with content_restricted.",
        "string",
    ),
    schema_field(
        "max_content_rating",
        "Cap on the rating forwarded upstream for this route (parents included).",
        "string",
    ),
    schema_field(
        "age_bands",
        "Age bands from youngest to oldest, as in the `age_band` claim.",
        "array",
        default=list(DEFAULT_AGE_BANDS),
        elements={"type": "string"},
    ),
    schema_field(
        "content_ratings",
        "Content ratings from mildest to strongest, as in the `content_rating` / `max_content_rating` claims.",
        "array",
        default=list(DEFAULT_CONTENT_RATINGS),
        elements={"type": "string"},
    ),
    schema_field(
        "content_rating_header",
        "Upstream header carrying the caller's effective content rating (set only when it differs from the one "
        "sv-jwt forwarded).",
        "string",
        default="X-Content-Rating",
        required=True,
    ),
    schema_field("realm", "The realm in the WWW-Authenticate challenge of a 401.", "string", default="storyverse"),
)


@dataclass(frozen=True)
class Rule:
    methods: frozenset[str] | None  # None: every method
    roles: frozenset[str]


@dataclass(frozen=True)
class Owned:
    name: str
    kind: str
    optional: bool = False


@dataclass(frozen=True)
class Config:
    public: bool = False
    rules: tuple[Rule, ...] = ()
    admin_override: bool = False
    owned: tuple[Owned, ...] = ()
    child_denied_methods: frozenset[str] = frozenset({"DELETE"})
    enforce_hours: bool = True
    generation_kind: str | None = None
    kind_capture: str | None = None
    min_age_band: str | None = None
    min_content_rating: str | None = None
    max_content_rating: str | None = None
    age_bands: tuple[str, ...] = DEFAULT_AGE_BANDS
    content_ratings: tuple[str, ...] = DEFAULT_CONTENT_RATINGS
    content_rating_header: str = "X-Content-Rating"
    realm: str = "storyverse"
    route_id: str | None = None  # set by Kong when the plugin is scoped to one route


def _get(raw: dict[str, Any], name: str, default: Any) -> Any:
    value = raw.get(name)
    return default if value is None else value


def _bool(raw: dict[str, Any], name: str, default: bool) -> bool:
    value = _get(raw, name, default)
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be a boolean")
    return value


def _list(value: Any, where: str) -> list:
    if not isinstance(value, list | tuple):
        raise ValueError(f"{where} must be an array")
    return list(value)


def _choices(value: Any, allowed: tuple[str, ...], where: str) -> frozenset[str]:
    out = set()
    for item in _list(value, where):
        norm = item.upper() if isinstance(item, str) and allowed is METHODS else item
        if norm not in allowed:
            raise ValueError(f"{where}: unknown value {item!r} (expected one of {', '.join(allowed)})")
        out.add(norm)
    return frozenset(out)


def _rules(raw: Any) -> tuple[Rule, ...]:
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, item in enumerate(_list(raw, "rules")):
        where = f"rules[{i}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where} must be a record with methods and roles")
        roles = _choices(item.get("roles") or [], ROLES, where + ".roles")
        if not roles:
            raise ValueError(f"{where}.roles must name at least one role")
        if rules and rules[-1].methods is None:
            raise ValueError(f"{where} is unreachable: the rule before it covers every method")
        methods = _choices(item.get("methods") or [], METHODS, where + ".methods") or None
        if methods is not None and methods <= seen:
            raise ValueError(f"{where} is unreachable: earlier rules already cover {', '.join(sorted(methods))}")
        seen |= methods or set()
        rules.append(Rule(methods, roles))
    return tuple(rules)


def _capture_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _CAPTURE.match(value):
        raise ValueError(f"{where} must be a capture name (letters, digits, underscore), got {value!r}")
    return value


def _owned(raw: Any) -> tuple[Owned, ...]:
    owned: list[Owned] = []
    for i, item in enumerate(_list(raw, "owned_captures")):
        where = f"owned_captures[{i}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where} must be a record with name and kind")
        name = _capture_name(item.get("name"), where + ".name")
        if any(o.name == name for o in owned):
            raise ValueError(f"{where}.name {name!r} is listed twice")
        kind = item.get("kind")
        if kind not in OWNER_KINDS:
            raise ValueError(f"{where}.kind must be one of {', '.join(OWNER_KINDS)}, got {kind!r}")
        owned.append(Owned(name, kind, _bool(item, "optional", False)))
    return tuple(owned)


def _scale(raw: dict[str, Any], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    values = tuple(_list(_get(raw, name, default), name))
    if not values:
        raise ValueError(f"{name} must not be empty")
    for value in values:
        if not isinstance(value, str) or not _SCALE_VALUE.match(value):
            raise ValueError(f"{name}: {value!r} is not a short token")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} lists a value twice")
    return values


def _on_scale(raw: dict[str, Any], name: str, scale: tuple[str, ...], scale_name: str) -> str | None:
    value = raw.get(name)
    if value is not None and value not in scale:
        raise ValueError(f"{name} {value!r} is not one of {scale_name}: {', '.join(scale)}")
    return value


def parse_config(raw: dict[str, Any]) -> Config:
    """Config from Kong's config dict (None means unset; Kong's own __keys are ignored); raises ValueError."""
    public = _bool(raw, "public", False)
    rules = _rules(_get(raw, "rules", []))
    if not rules and not public:
        raise ValueError("rules: a route that is not public needs at least one rule (deny by default)")
    kind, capture = raw.get("generation_kind"), raw.get("kind_capture")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"generation_kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind is not None and capture is not None:
        raise ValueError("generation_kind and kind_capture are exclusive: set one")
    ages = _scale(raw, "age_bands", DEFAULT_AGE_BANDS)
    ratings = _scale(raw, "content_ratings", DEFAULT_CONTENT_RATINGS)
    low, high = (_on_scale(raw, n, ratings, "content_ratings") for n in ("min_content_rating", "max_content_rating"))
    if low is not None and high is not None and ratings.index(low) > ratings.index(high):
        raise ValueError("min_content_rating is above max_content_rating: no caller could use the route")
    header = _get(raw, "content_rating_header", "X-Content-Rating")
    if not isinstance(header, str) or not _HEADER.match(header):
        raise ValueError(f"content_rating_header {header!r} is not a header name")
    realm = _get(raw, "realm", "storyverse")
    if not isinstance(realm, str) or not realm.isprintable() or '"' in realm or "\\" in realm:
        raise ValueError("realm must be printable and contain no quotes or backslashes")
    route_id = raw.get("route_id")
    return Config(
        public=public,
        rules=rules,
        admin_override=_bool(raw, "admin_override", False),
        owned=_owned(_get(raw, "owned_captures", [])),
        child_denied_methods=_choices(_get(raw, "child_denied_methods", ["DELETE"]), METHODS, "child_denied_methods"),
        enforce_hours=_bool(raw, "enforce_hours", True),
        generation_kind=kind,
        kind_capture=None if capture is None else _capture_name(capture, "kind_capture"),
        min_age_band=_on_scale(raw, "min_age_band", ages, "age_bands"),
        min_content_rating=low,
        max_content_rating=high,
        age_bands=ages,
        content_ratings=ratings,
        content_rating_header=header,
        realm=realm,
        route_id=route_id if isinstance(route_id, str) and route_id else None,
    )
