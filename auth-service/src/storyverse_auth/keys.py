"""The one place that builds Redis keys. The gateway reads the revocation keys: keep these formats stable.

- ``sv:revoked:jti:<jti>``   an access token revoked before its ``exp`` (value "1", TTL = its remaining lifetime).
- ``sv:revoked:sid:<sid>``   every access token carrying this session id (``sid`` claim) is revoked
                              (TTL = access-token lifetime, so it outlives every token of the session).
"""

from __future__ import annotations

import hashlib

REVOKED_JTI_PREFIX = "sv:revoked:jti:"
REVOKED_SID_PREFIX = "sv:revoked:sid:"
THROTTLE_PREFIX = "sv:auth:v1:throttle:"
METRICS_KEY = "sv:auth:v1:metrics"


def revoked_jti(jti: str) -> str:
    return f"{REVOKED_JTI_PREFIX}{jti}"


def revoked_sid(sid: str) -> str:
    return f"{REVOKED_SID_PREFIX}{sid}"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def throttle_account_ip(email: str, ip: str) -> str:
    # The e-mail is hashed: no personal data in Redis key names.
    return f"{THROTTLE_PREFIX}{{acct:{_digest(email)}}}:{ip}"


def throttle_ip(ip: str) -> str:
    return f"{THROTTLE_PREFIX}{{ip:{ip}}}"


def throttle_lock(counter_key: str) -> str:
    return f"{counter_key}:lock"
