"""The event half of `PluginServer`: each event (one phase of one request) runs in its own greenlet.

Hub side: HandleEvent and every Step run the event's greenlet until its next output (the answer to that RPC) or
until it waits for I/O (it answers later itself); budgets and abandoned events. Greenlet side: the plugin's phase
handler and its PDK calls, each handed to the hub as ``{"Method", "Args"}``. See ``kong_pluginserver.server``.
"""

from __future__ import annotations

import logging
import time
import traceback
from typing import TYPE_CHECKING, Any

from greenlet import getcurrent, greenlet

from kong_pluginserver.model import DEFERRED, ID_SPACE, Event, EventAbandoned, ServerError
from kong_pluginserver.pdk import TERMINAL_METHODS, PDKException, sanitize_log_args

if TYPE_CHECKING:
    from kong_pluginserver.transport import Conn

log = logging.getLogger("kong_pluginserver")

MSG_RET = "ret"
# what an event's greenlet hands the hub
_CALL, _END, _RAISED = "call", "end", "raised"


class EventsMixin:
    """Event handling for `PluginServer` (its state: ``events``, ``current``, ``waiting_io``, ``resume``, ``hub``,
    ``answer``, ``budget``... is set up in `PluginServer.__init__`); runs on the hub and in event greenlets."""

    # -- events (hub side) ------------------------------------------------------------------------------------

    def handle_event(self, event: dict, conn: Conn, msgid: Any) -> Any:
        iid = event["InstanceId"]
        ins = self.instances.get(iid)
        if ins is None:
            raise ServerError(f"no plugin instance #{iid}")
        phase = event["EventName"]
        handler = getattr(ins.obj, phase)
        eid = self.event_id
        self.event_id = (eid + 1) % ID_SPACE
        ev = Event(eid, phase, greenlet(self._run_event, parent=self.hub))
        self.events[eid] = ev
        return self._advance(ev, (ev, handler), conn, msgid)

    def step(self, data: dict, conn: Conn, msgid: Any) -> Any:
        return self._resume(data, (data.get("Data"), None), conn, msgid)

    def step_error(self, data: dict, conn: Conn, msgid: Any) -> Any:
        return self._resume(data, (None, data.get("Data")), conn, msgid)

    def _resume(self, data: dict, value: tuple, conn: Conn, msgid: Any) -> Any:
        eid = data["EventId"]
        ev = self.events.get(eid)
        if ev is None or ev.waiting is not None:  # unknown, or a Step while the plugin still runs (Kong never does)
            raise ServerError(f"event id {eid} not found")
        if ev.request_id is None and type(value[0]) is dict:
            self._sniff_request_id(ev, value[0])
        return self._advance(ev, value, conn, msgid)

    def _sniff_request_id(self, ev: Event, data: dict) -> None:
        """Remember the request id when the plugin read the headers (JSON log lines carry it)."""
        rid = data.get(self.request_id_header)
        if isinstance(rid, list) and rid:
            rid = rid[0]
        if isinstance(rid, str):
            ev.request_id = rid[:200]

    def _advance(self, ev: Event, value: Any, conn: Conn, msgid: Any) -> Any:
        """Run the event until its next output (the answer to this RPC), or until it waits for I/O (answered later
        by the event itself, `_emit`)."""
        ev.waiting = (conn, msgid)
        conn.pending = ev
        ev.deadline = time.monotonic() + self.budget
        ev.in_advance = True
        try:
            out = ev.glet.switch(value)
        finally:
            ev.in_advance = False
        if type(out) is not tuple or len(out) != 2 or out[0] not in _KINDS:
            self.waiting_io.add(ev)  # it switched to the hub for I/O (gevent passes no output): answered later
            return DEFERRED
        return self._settle(ev, out)[1]

    def _settle(self, ev: Event, out: tuple) -> tuple[Conn, tuple]:
        """An event's output: the reply for its pending RPC and its bookkeeping."""
        kind, payload = out
        conn, msgid = ev.waiting
        ev.waiting = None
        self.waiting_io.discard(ev)
        if conn.pending is ev:
            conn.pending = None
        if kind == _CALL:
            if ev.done:
                self.events.pop(ev.id, None)
            else:
                ev.parked_at = time.monotonic()
            return conn, (msgid, None, {"Data": payload, "EventId": ev.id})
        self.events.pop(ev.id, None)
        if kind == _END:
            return conn, (msgid, None, {"Data": MSG_RET, "EventId": ev.id})
        return conn, (msgid, payload, None)  # _RAISED

    def finish_terminated(self) -> None:
        """Let events that exited run their remaining code (kong-pdk's exit returns at once, the code goes on)."""
        while self.resume:
            self.resume.pop().glet.switch(None)  # returns at its end, or when it waits for I/O

    def abandon(self, ev: Event, why: str) -> tuple[Conn, Any] | None:
        """Give up on an event: free it now and unwind its greenlet with `EventAbandoned`."""
        if ev.abandoned:
            return None
        ev.abandoned = True
        self.abandoned_count += 1
        self.events.pop(ev.id, None)
        self.waiting_io.discard(ev)
        waiting, ev.waiting = ev.waiting, None
        if waiting is not None and waiting[0].pending is ev:
            waiting[0].pending = None
        log.warning("event #%d (%s) abandoned: %s", ev.id, ev.phase, why, extra={"request_id": ev.request_id})
        if ev.glet and not ev.glet.dead and ev.glet is not getcurrent():
            ev.glet.throw(EventAbandoned(ev.id))  # parked on a Step or waiting for I/O: unwinds now
        return waiting

    def tick(self, now: float) -> list[tuple[Conn, Any, str]]:
        """Budgets (every 10 ms): RPCs whose plugin code has not answered in time get an error answer."""
        out = []
        for ev in [e for e in self.waiting_io if now > e.deadline]:
            err = f"event #{ev.id} ({ev.phase}) of {self.module.name}: no answer within {self.budget * 1000:.0f} ms"
            waiting = self.abandon(ev, "budget spent")
            if waiting is not None:
                out.append((waiting[0], waiting[1], err))
        return out

    def sweep(self, now: float) -> None:
        """Abandon events parked on a Step Kong will never send (a Lua error in the PDK function, Kong gone)."""
        for ev in [e for e in self.events.values() if e.waiting is None and now - e.parked_at > self.step_wait]:
            self.abandon(ev, f"Kong sent no Step for {self.step_wait:.0f} s")

    # -- events (their own greenlets) -------------------------------------------------------------------------

    def _run_event(self, start: tuple) -> Any:
        ev, handler = start
        self.current[ev.glet] = ev
        try:
            handler(self.kong)
            out = (_END, None)
        except EventAbandoned:
            return None
        except BaseException as exc:  # noqa: BLE001 - the plugin raised: kong-pdk would never answer (Kong waits 60 s)
            if ev.done:
                log.error("event #%d (%s): exception after exit\n%s", ev.id, ev.phase, traceback.format_exc(),
                          extra={"request_id": ev.request_id})  # fmt: skip
                return None
            log.error("event #%d (%s): unhandled exception\n%s", ev.id, ev.phase, traceback.format_exc(),
                      extra={"request_id": ev.request_id})  # fmt: skip
            out = (_RAISED, f"unhandled exception in {ev.phase}: {type(exc).__name__}: {exc}")
        finally:
            self.current.pop(ev.glet, None)
        if ev.done or ev.abandoned:
            return None
        if ev.in_advance:
            return out  # back in _advance (the hub is our parent)
        self.answer(*self._settle(ev, out))
        return None

    def _pdk_call(self, method: str, args: tuple) -> Any:
        """In an event's greenlet: hand ``{"Method", "Args"}`` to Kong and wait for its answer (the next Step)."""
        if method.startswith("kong.log.") or method == "kong.log":
            args = sanitize_log_args(args)
        ev = self.current.get(getcurrent())
        if ev is None or ev.done:  # after exit (or outside an event): no answer will ever come
            return (None, None) if self.lua_style and method not in TERMINAL_METHODS else None
        if ev.abandoned:
            raise EventAbandoned(ev.id)
        out = (_CALL, {"Method": method, "Args": list(args)})
        if method in TERMINAL_METHODS:
            ev.done = True
            if ev.in_advance:
                self.resume.append(ev)
                _switch(self.hub, out)  # _advance answers; finish_terminated resumes us
            else:
                self.answer(*self._settle(ev, out))
            return None
        if ev.in_advance:
            data, err = _switch(self.hub, out)
        else:  # resumed by gevent after I/O: answer the pending RPC ourselves, then park until the Step
            self.answer(*self._settle(ev, out))
            data, err = _switch(self.hub)
        if self.lua_style:
            return data, err
        if err:
            raise PDKException(f"exception from {method}: {err}")
        return data


_KINDS = frozenset((_CALL, _END, _RAISED))


def _switch(target: greenlet, *value: Any) -> Any:
    """A plain greenlet switch (gevent's Hub.switch takes no value)."""
    return greenlet.switch(target, *value)
