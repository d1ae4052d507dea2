"""sv-quota (access) and sv-quota-log (log): read what the core needs in as few PDK calls as possible.

sv-quota, access only (every route):
        ctx.shared.get(identity) [+ client.get_forwarded_ip on anonymous routes] [+ request.get_method if quota.methods]
        [+ request.get_raw_body on an abuse.login route]
        -> one Redis script (limits, quota and the subject's abuse block)
        -> ctx.shared.set(SHARED_QUOTA, {ok, headers, reservation}) (allowed: the decision mark sv-edge's guard
           requires; sv-edge sets the RateLimit/quota response headers from it) [+ ctx.shared.set(login fingerprint)]
        or ctx.shared.get(request id) + response.exit(429) (rejected; nothing after exit). A 429 it answers is an
        abuse strike (abuse.statuses) recorded right there, one Redis call and no PDK call (a daily-quota refusal
        is not abuse).
sv-quota-log (kong-plugins/plugins/sv-quota-log.py, priority just below sv-quota, the SAME config as the route's
        sv-quota), log only, configured only where the log phase is needed: daily-quota routes (the reservation
        settle) and login routes (failed logins; credential stuffing with abuse.login). Keeping it off the other
        routes saves two round trips (HandleEvent + log.serialize) per request; their 401/403 answers are then not
        abuse strikes (their 429s still are, see above).
access  ctx.shared.set(SHARED_QUOTA_LOG, True): the mark that the settling plugin server is up (sv-edge's guard)
log     [ctx.shared.get(SHARED_QUOTA) on quota routes] + log.serialize() (status, client_ip)
        -> settle script when a unit is held: commit on success or an unknown outcome (504, 502, 499), release
           only on a definite failure (policy.charges); a unit never settled lapses after reservation_ttl and
           counts as charged (decide.lua)
        and, on a 401/403 (abuse.statuses; 429s are sv-quota's own, struck in access; a 403 only when the backend
        answered it, unless abuse.gateway_403: sv-rbac's refusals are not abuse):
        [ctx.shared.get(identity) on user routes] [+ ctx.shared.get(login fingerprint) on a failed login]
        -> one abuse.lua strike. In the log phase Kong runs in a timer: only log.serialize() and ctx.shared are
        reliable there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import traceback

from storyverse_plugins import PRIORITIES, __version__
from storyverse_plugins.common.decision import Allow, Deny
from storyverse_plugins.common.identity import SHARED_IDENTITY, SHARED_QUOTA, SHARED_QUOTA_LOG, SHARED_REQUEST_ID
from storyverse_plugins.common.redis_pool import get_client
from storyverse_plugins.quota.limiter import Limiter, Options, Outcome
from storyverse_plugins.quota.metrics import METRICS
from storyverse_plugins.quota.policy import build_batch, build_strike, charges, verified
from storyverse_plugins.quota.schema import Config, Schema, parse_config
from storyverse_plugins.quota.storage import RedisStorage, StorageError
from storyverse_plugins.quota.strategies import Reservation

version = __version__
priority = PRIORITIES["sv-quota"]
log_priority = PRIORITIES["sv-quota-log"]

SHARED_LOGIN = "sv_quota_login"  # fingerprint of the account a login request names (abuse.login routes)
_log = logging.getLogger("storyverse_plugins.quota")
LOG_EVERY_S = 1.0  # at most one Redis error line per second per instance (a dead Redis must not flood the log)

__all__ = ["SHARED_LOGIN", "SHARED_QUOTA", "LogPlugin", "Plugin", "Schema", "log_priority", "priority", "version"]


def make_limiter(cfg: Config) -> Limiter:
    storage = RedisStorage(lambda: get_client(cfg.redis), cfg.breaker_ms)
    METRICS.watch_breaker(storage)
    options = Options(
        cfg.retry_after_jitter_max, cfg.overlimit_cache, cfg.quota_cache_max, cfg.response_headers != "never"
    )
    return Limiter(storage, options, metrics=METRICS)


class _Guard:
    exited = False


class _Base:
    def __init__(self, config: dict, limiter: Limiter | None = None, clock=time.time) -> None:
        self.cfg = parse_config(config)
        self.limiter = limiter or make_limiter(self.cfg)
        self.clock = clock
        self._last_log = 0.0

    def _strike(self, kong, identity: dict | None, ip: str, fingerprint: str, status: int) -> None:
        strike = build_strike(self.cfg, identity, ip, fingerprint, self.clock())
        try:
            result = self.limiter.strike(strike)
        except StorageError as exc:
            self.limiter.metrics.inc("redis_errors", "abuse")
            if exc.opened:
                self.limiter.metrics.inc("breaker_open", "abuse")
            self._report(kong, str(exc), exc.opened)
            return
        self.limiter.metrics.inc("abuse_strikes", str(status))  # counted once Redis has it
        if result.new_block:
            kong.log.warn(
                f"sv-quota abuse block: {strike.kind} {strike.subject} for {result.duration_ms // 1000} s "
                f"(level {result.level}, {result.reason})"
            )

    def _is_quota_refusal(self, status: int, policy: object) -> bool:
        """A 429 for this route's daily quota is not abuse (the app retries a used-up quota; the over-limit cache
        keeps that cheap): recognised by its RateLimit-Policy, which names the binding limit."""
        if status != 429 or not self.cfg.quota.enabled:
            return False
        return isinstance(policy, str) and policy.startswith(f'"{self.cfg.quota.name}";')

    def _report(self, kong, error: str, always: bool = False) -> None:
        """Log a Redis failure: at most one line per LOG_EVERY_S, but every opening of the breaker."""
        now = self.clock()
        if always or now - self._last_log >= LOG_EVERY_S:
            self._last_log = now
            kong.log.err("sv-quota redis: " + error)


class Plugin(_Base):
    """sv-quota: the access phase only (no log phase, so no log-phase round trips on any route)."""

    def access(self, kong) -> None:
        guard = _Guard()
        try:
            self._access(kong, guard)
        except Exception:  # noqa: BLE001 - an uncaught exception stalls Kong 60 s, then fails open
            if not guard.exited:
                self._crashed(kong, "access")

    def _access(self, kong, guard: _Guard) -> None:
        cfg = self.cfg
        identity = None if cfg.ip_only else verified(kong.ctx.shared.get(SHARED_IDENTITY))
        # the client's address as the realip module resolved it (trusted_ips + real_ip_header), not the load balancer's
        ip = kong.client.get_forwarded_ip() if identity is None else None
        method = kong.request.get_method() if identity and cfg.quota.enabled and cfg.quota.methods else None
        outcome = self.limiter.check(build_batch(cfg, identity, ip, method, self.clock()))
        if outcome.error:
            self._report(kong, outcome.error, outcome.breaker_opened)
        if isinstance(outcome.decision, Deny):
            return self._reject(kong, outcome.decision, guard, identity, ip)
        self._allow(kong, outcome)
        if cfg.abuse.login:  # remember whose login this is, to count distinct failed accounts per IP in log
            kong.ctx.shared.set(SHARED_LOGIN, login_fingerprint(kong.request.get_raw_body(), cfg.abuse.login_field))

    def _allow(self, kong, outcome: Outcome) -> None:
        decision: Allow = outcome.decision
        mark: dict = {"ok": True}  # one call: the decision mark, the response headers and the held unit
        if decision.response_headers and self.cfg.response_headers == "always":
            mark["headers"] = dict(decision.response_headers)
        if outcome.reservation is not None:
            mark["reservation"] = outcome.reservation.to_shared()
        kong.ctx.shared.set(SHARED_QUOTA, mark)

    def _reject(self, kong, deny: Deny, guard: _Guard, identity: dict | None, ip: str | None) -> None:
        request_id = kong.ctx.shared.get(SHARED_REQUEST_ID)
        guard.exited = True
        kong.response.exit(deny.status, deny.body(request_id=request_id), deny.response_headers())
        # after the answer is handed to Kong: a strike is one Redis call, no PDK call (reports go to Python's log)
        cfg = self.cfg
        if cfg.abuse.enabled and deny.status in cfg.abuse.statuses:
            if not self._is_quota_refusal(deny.status, deny.headers.get("RateLimit-Policy")):
                self._strike(_NoLog(kong), identity, ip or "", "", deny.status)

    def _crashed(self, kong, phase: str) -> None:
        kong.log.err(f"sv-quota {phase} failed: " + traceback.format_exc(limit=3))
        if not self.cfg.fail_open:
            deny = Deny(500, "internal_error", "The request could not be metered.")
            kong.response.exit(deny.status, deny.body(), deny.response_headers())


class LogPlugin(_Base):
    """sv-quota-log: the log phase only (reservation settle, 401/403 abuse strikes), where the route configures it."""

    def access(self, kong) -> None:
        kong.ctx.shared.set(SHARED_QUOTA_LOG, True)  # the mark: this plugin server is up to settle in log

    def log(self, kong) -> None:
        if not (self.cfg.quota.enabled or self.cfg.abuse.enabled):
            return
        try:
            self._log(kong)
        except Exception:  # noqa: BLE001 - log runs after the response; report and move on
            kong.log.err("sv-quota log failed: " + traceback.format_exc(limit=3))

    def _log(self, kong) -> None:
        cfg = self.cfg
        mark = kong.ctx.shared.get(SHARED_QUOTA) if cfg.quota.enabled else None
        raw = mark.get("reservation") if isinstance(mark, dict) else None
        if not raw and not cfg.abuse.enabled:
            return
        record = parse_record(kong.log.serialize())
        status = response_status(record)
        if raw:
            self._settle(kong, Reservation.from_shared(raw), charges(status))
        # 429s are sv-quota's own answers, struck (or not: daily quota) in its access phase
        if cfg.abuse.enabled and status in cfg.abuse.statuses and status != 429 and self._signals(status, record):
            identity = None if cfg.ip_only else verified(kong.ctx.shared.get(SHARED_IDENTITY))
            fingerprint = ""
            if cfg.abuse.login and status == 401:
                fingerprint = str(kong.ctx.shared.get(SHARED_LOGIN) or "")
            self._strike(kong, identity, str(record.get("client_ip") or ""), fingerprint, status)

    def _signals(self, status: int, record: dict) -> bool:
        """A 403 the gateway answered itself (no upstream status: sv-rbac's rules) is a policy answer, not abuse,
        unless abuse.gateway_403. Kong 3.9.1 serializes `upstream_status` as "" when nothing was proxied
        (kong/pdk/log.lua:906)."""
        return status != 403 or self.cfg.abuse.gateway_403 or bool(record.get("upstream_status"))

    def _settle(self, kong, reservation: Reservation, commit: bool) -> None:
        """Commit or release; a lost commit or release lapses after reservation_ttl and is charged then."""
        try:
            self.limiter.settle(reservation, commit, int(self.clock() * 1000))
            METRICS.inc("settled", "commit" if commit else "release")
        except StorageError as exc:  # lapses after reservation_ttl: charged
            METRICS.inc("settled", "error")
            METRICS.inc("redis_errors", "settle")
            if exc.opened:
                METRICS.inc("breaker_open", "settle")
            self._report(kong, str(exc), exc.opened)


class _NoLog:
    """After kong.response.exit nothing more may be called on the PDK: strike reports go to Python's log only."""

    def __init__(self, kong) -> None:
        self.log = _PyLog()


class _PyLog:
    def warn(self, msg: str) -> None:
        _log.warning(msg)

    def err(self, msg: str) -> None:
        _log.error(msg)


def parse_record(serialized) -> dict:
    """kong.log.serialize()'s record (a JSON string; a dict in fakes); {} when unreadable."""
    try:
        record = json.loads(serialized) if isinstance(serialized, str | bytes) else serialized
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def response_status(record: dict) -> int:
    try:
        return int((record.get("response") or {}).get("status") or 0)
    except (TypeError, ValueError, AttributeError):
        return 0


def login_fingerprint(body, field: str) -> str:
    """A short hash of the account a login body names: distinct accounts are counted, the address is not stored."""
    if isinstance(body, bytes | bytearray):
        body = bytes(body).decode("utf-8", "replace")
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        data = {}
    name = str(data.get(field) or "") if isinstance(data, dict) else ""
    return hashlib.blake2b(name.strip().lower().encode(), digest_size=8).hexdigest()
