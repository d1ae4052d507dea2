"""The auth service's own Redis keys (no other service reads them). The keys the gateway reads (the revocation keys
``sv:revoked:...``) are ``storyverse_contracts.keys`` (revoked_jti_key, revoked_sid_key).

- ``sv:auth:v1:session:{<sid>}``            one session (a hash: account, generation, times, device); every key
                                             of one session carries the ``{<sid>}`` hash tag, so on Redis Cluster
                                             a session lives in one slot and its scripts run on one node.
- ``sv:auth:v1:account:{<account>}:sessions`` the account's session ids (a sorted set by creation time), for
                                             listing and revoking a parent's or a child's devices.
"""

from __future__ import annotations

import hashlib

THROTTLE_PREFIX = "sv:auth:v1:throttle:"
METRICS_KEY = "sv:auth:v1:metrics"
SESSION_PREFIX = "sv:auth:v1:session:"
ACCOUNT_PREFIX = "sv:auth:v1:account:"


def session(sid: str) -> str:
    return f"{SESSION_PREFIX}{{{sid}}}"


def account_sessions(account_id: str) -> str:
    return f"{ACCOUNT_PREFIX}{{{account_id}}}:sessions"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def throttle_account_ip(email: str, ip: str) -> str:
    # The e-mail is hashed: no personal data in Redis key names.
    return f"{THROTTLE_PREFIX}{{acct:{_digest(email)}}}:{ip}"


def throttle_ip(ip: str) -> str:
    return f"{THROTTLE_PREFIX}{{ip:{ip}}}"


def throttle_lock(counter_key: str) -> str:
    return f"{counter_key}:lock"
