"""The one place that builds Redis keys. The gateway reads the revocation keys: keep these formats stable.

The gateway (kong-plugins storyverse_plugins/common/keys.py) builds the same two keys; both carry the session's hash
tag so the gateway reads them in one round trip on Redis Cluster:
- ``sv:revoked:{s:<sid>}:jti:<jti>``  an access token revoked before its ``exp`` (value "1", TTL = its remaining
                                       lifetime); ``{j:<jti>}`` instead of ``{s:<sid>}`` for a token without ``sid``.
- ``sv:revoked:{s:<sid>}:sid``        every access token carrying this session id (``sid`` claim) is revoked
                                       (TTL = access-token lifetime, so it outlives every token of the session).

The auth service's own keys (the gateway never reads them):

- ``sv:auth:v1:session:{<sid>}``            one session (a hash: account, generation, times, device); every key
                                             of one session carries the ``{<sid>}`` hash tag, so on Redis Cluster
                                             a session lives in one slot and its scripts run on one node.
- ``sv:auth:v1:account:{<account>}:sessions`` the account's session ids (a sorted set by creation time), for
                                             listing and revoking a parent's or a child's devices.
"""

from __future__ import annotations

import hashlib

REVOKED_PREFIX = "sv:revoked:"
THROTTLE_PREFIX = "sv:auth:v1:throttle:"
METRICS_KEY = "sv:auth:v1:metrics"
SESSION_PREFIX = "sv:auth:v1:session:"
ACCOUNT_PREFIX = "sv:auth:v1:account:"


def revoked_jti(jti: str, sid: str | None) -> str:
    tag = f"s:{sid}" if sid else f"j:{jti}"
    return f"{REVOKED_PREFIX}{{{tag}}}:jti:{jti}"


def revoked_sid(sid: str) -> str:
    return f"{REVOKED_PREFIX}{{s:{sid}}}:sid"


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
