"""Abuse blocks for admins: the auth service's admin endpoint lists (and may lift) what sv-quota blocked.

How blocks happen (sv-quota, config `abuse`): in the log phase every answer whose status is in `abuse.statuses`
(401/403/429) is a strike against its subject — the verified account on user routes, else the client IP
(kong.log.serialize()'s client_ip). `threshold` strikes inside `window` seconds, or on a login route
(`abuse.login: true`) `login_distinct` different accounts failing to log in from one IP inside `login_window`
(credential stuffing), block the subject for `block_base` seconds, doubling with each further block (capped at
`block_max`) until `memory` seconds pass without one. One atomic script (quota/lua/abuse.lua) counts and blocks;
decide.lua reads the block of the request's subject (the string `blk` key abuse.lua sets beside the hash's `until`,
keys.block_key) in the same MGET as its rate state, so a blocked subject gets
429 `rate_limited` (`reason: abuse_block`) with Retry-After at no extra Redis cost, and the plugin server then
answers it from its in-process cache. Account blocks apply on user routes, IP blocks on routes limited by IP
(anonymous routes such as login). Every block started is counted in sv_quota_abuse_blocks_total{subject,reason}.

Use from the auth service (any redis-py client on the limits' Redis: standalone or Cluster)::

    from storyverse_plugins.quota.abuse import list_blocks, unblock
    blocks = list_blocks(redis_client)        # live blocks, longest-remaining first
    unblock(redis_client, blocks[0]["key"])   # lift one (the escalation level is kept)

Each entry: {"key", "kind": "ip" | "account", "subject", "reason": "strikes" | "credential_stuffing",
"level", "until_ms", "remaining_s", "started_ms"}.
"""

from __future__ import annotations

import math
import time
from typing import Any

from storyverse_contracts.keys import BLOCKS_INDEX, block_key


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def list_blocks(client, now_ms: int | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    """The live abuse blocks (at most `limit`), from the index sv-quota writes when a block starts.

    Entries whose hash says otherwise (lifted, expired, or re-blocked with a new end) are reported as the hash says;
    lapsed index entries are pruned."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    client.zremrangebyscore(BLOCKS_INDEX, "-inf", now)
    keys = [_text(k) for k in client.zrevrangebyscore(BLOCKS_INDEX, "+inf", now + 1, start=0, num=limit)]
    out = []
    for key in keys:
        h = {_text(k): _text(v) for k, v in (client.hgetall(key) or {}).items()}
        until = int(h.get("until") or 0)
        if until <= now:
            continue
        out.append(
            {
                "key": key,
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


def unblock(client, key: str) -> bool:
    """Lift a block now (plugin servers that cached it answer 429 until their cached entry ends, at most
    `quota_cache_max` seconds; the escalation level stays so a relapse is blocked longer). True when one was set."""
    lifted = bool(client.hdel(key, "until"))  # the admin's record
    lifted = bool(client.delete(block_key(key))) or lifted  # what decide.lua enforces
    client.zrem(BLOCKS_INDEX, key)
    return lifted
