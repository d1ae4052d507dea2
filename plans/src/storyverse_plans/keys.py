"""The Redis layout the rate limiting service reads and writes next to sv-quota (its builder is the plugin's
``storyverse_plugins.common.keys``; tests/rate_limiting_service/test_rls_keys.py asserts both build equal keys):

  sv:quota:v1:{f:<family>}:q:<scope>:<YYYY-MM-DD>   hash: used, grant (+ occ: the occasion stories included in grant),
                                                    r:<rid> -> expiry ms per in-flight reservation (a held unit; one
                                                    whose expiry passed lapsed and counts as used until sv-quota
                                                    sweeps it into `used`)
  sv:quota:v1:{u:<sub>}:q:u:<sub>:<YYYY-MM-DD>      the same for an account without a family
  sv:quota:v1:{abuse}:blocks                        zset: abuse hash key -> block end (ms)
  <abuse hash key with `}:ab` -> `}:blk`>           string: the block's end while it lasts (what sv-quota enforces)
  sv:quota:v1:{plans}:occasions                     hash: date (YYYY-MM-DD or MM-DD) -> extra stories (admin API)

<scope> is `fam` (the family's shared pool), `u:<sub>` (per-user quota) or `c:<sub>` (a child's own limit); the
date is the family's local date. Every key of a family shares the `{f:<family>}` hash tag (one slot on a cluster).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

PREFIX = "sv:quota:v1:"
BLOCKS_INDEX = PREFIX + "{abuse}:blocks"
OCCASIONS = PREFIX + "{plans}:occasions"
# Hash tags are literal braces; SCAN's glob treats `{` `}` as plain characters.
COUNTER_PATTERN = PREFIX + "{*}:q:*"

_UNSAFE = re.compile(r"[{}\s]")
_COUNTER = re.compile(
    re.escape(PREFIX) + r"\{(?P<kind>[fu]):(?P<tag_id>[^}]*)\}:q:(?P<scope>fam|[uc]:[^:]+):(?P<day>\d{4}-\d{2}-\d{2})\Z"
)
SCOPE_NAMES = {"fam": "family", "u": "user", "c": "child"}


def _clean(value: str) -> str:
    return _UNSAFE.sub("_", str(value))


def family_tag(family_id: str) -> str:
    return "{f:" + _clean(family_id) + "}"


def quota_key(tag: str, scope: str, day: str) -> str:
    """Daily counter hash (fields `used`, `grant`) of a quota scope: `fam`, `u:<sub>` or `c:<sub>`."""
    return f"{PREFIX}{tag}:q:{_clean(scope)}:{day}"


RESERVATION = "r:"  # a counter's field per held unit: r:<rid> -> expiry ms


def block_key(abuse: str) -> str:
    """The string key sv-quota enforces a block with, for an abuse hash key (`...}:ab...` -> `...}:blk...`)."""
    head, sep, tail = abuse.partition("}:ab")
    return head + "}:blk" + tail if sep else abuse + ":blk"


def family_key(family_id: str, day: str) -> str:
    return quota_key(family_tag(family_id), "fam", day)


def child_key(family_id: str, child_id: str, day: str) -> str:
    return quota_key(family_tag(family_id), "c:" + str(child_id), day)


def user_key(family_id: str, account_id: str, day: str) -> str:
    return quota_key(family_tag(family_id), "u:" + str(account_id), day)


@dataclass(frozen=True)
class CounterKey:
    """A parsed daily counter key."""

    key: str
    family_id: str  # the family of a `{f:...}` tag; "" for a `{u:...}` tag
    scope: str  # family | user | child
    subject: str  # the account id; "" for the family pool
    day: dt.date


def parse_counter(key: str) -> CounterKey | None:
    """The counter a key names, or None for reservations, other sv-quota keys and malformed names."""
    match = _COUNTER.match(key)
    if match is None:
        return None
    try:
        day = dt.date.fromisoformat(match["day"])
    except ValueError:
        return None
    scope_text = match["scope"]
    scope = SCOPE_NAMES["fam" if scope_text == "fam" else scope_text[0]]
    subject = "" if scope_text == "fam" else scope_text[2:]
    family_id = match["tag_id"] if match["kind"] == "f" else ""
    return CounterKey(key, family_id, scope, subject, day)
