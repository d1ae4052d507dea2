"""Abuse blocks sv-quota set (quota/lua/abuse.lua): list them, lift one.

sv-quota blocks a subject (an account, or a client IP on anonymous routes) after too many 401/403/429 answers or
too many distinct failed logins from one IP, for a time that doubles with each relapse. Each block is a hash
(`until`, `kind`, `subject`, `reason`, `level`, `seen`) under the subject's hash tag, with the block's end also in a
string key (storyverse_contracts.keys.block_key, what the plugin enforces), indexed in the zset
storyverse_contracts.keys.BLOCKS_INDEX (key -> block end, ms). A block's public id is its key in base64url, so
admins address it in a URL without the key's braces and colons.
"""

from __future__ import annotations

import base64
import binascii
import math
import time
from typing import Any

import redis
from storyverse_contracts.keys import BLOCKS_INDEX, PREFIX, block_key


def block_id(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def key_of(block: str) -> str | None:
    """The Redis key a block id names, or None when it is not one of sv-quota's abuse keys."""
    try:
        key = base64.urlsafe_b64decode(block + "=" * (-len(block) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return key if key.startswith(PREFIX) and (key.endswith(":ab") or ":ab:u:" in key) else None


def list_blocks(client: redis.Redis, now_ms: int | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    """The live blocks (at most ``limit``), longest remaining first; lapsed index entries are pruned, and an entry
    whose hash says otherwise (lifted, or re-blocked with a new end) is reported as its hash says."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    client.zremrangebyscore(BLOCKS_INDEX, "-inf", now)
    out = []
    for key in client.zrevrangebyscore(BLOCKS_INDEX, "+inf", now + 1, start=0, num=limit):
        h = client.hgetall(key) or {}
        until = int(h.get("until") or 0)
        if until > now:
            out.append(
                {
                    "id": block_id(key),
                    "kind": h.get("kind", ""),
                    "subject": h.get("subject", ""),
                    "reason": h.get("reason", ""),
                    "level": int(h.get("level") or 0),
                    "until_ms": until,
                    "remaining_s": math.ceil((until - now) / 1000),
                    "started_ms": int(h.get("seen") or 0),
                }
            )
    return sorted(out, key=lambda b: -b["until_ms"])


def unblock(client: redis.Redis, key: str) -> bool:
    """Lift a block now; True when one was set. The escalation level stays (a relapse is blocked longer); plugin
    servers that cached the block answer 429 until their cached entry ends (sv-quota `quota_cache_max` seconds)."""
    lifted = bool(client.hdel(key, "until"))  # the admin's record
    lifted = bool(client.delete(block_key(key))) or lifted  # the copy sv-quota enforces (decide.lua reads it)
    client.zrem(BLOCKS_INDEX, key)
    return lifted
