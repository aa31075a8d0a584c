"""What the station knows of the ward: every bed's status, session, vitals and alarms.

Pure: `WardState.handle(topic, payload, rx)` takes one MQTT message (decoded with the typed
models of monitor/wire.py) and the station's receive time, updates the beds, writes what is
history to the store, and returns the keys of the beds that changed; nothing here does I/O
besides the store. The server (monitor/station/server.py) pushes the changed beds to the pages.

Acknowledgement with a name (issue 15, item 3): a command the station sent is remembered with
the authenticated user who sent it. An `ack` stays *pending* on the alarm until the bed's own
`acknowledged` event (or its retained active list saying `acknowledged`) arrives; a refusal
on `…/cmd/result` drops the pending mark and is reported with the bed's reason.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Final

from monitor.station.store import StationStore
from monitor.wire import (
    TOPIC_ROOT,
    WireActiveAlarm,
    WireError,
    WireSession,
    WireStatus,
    decode_active_alarms,
    decode_alarm_event,
    decode_command_result,
    decode_sample,
    decode_session,
    decode_status,
    parse_topic,
)

__all__ = ["EXPECTED_INTERVAL_S", "TOPICS", "Bed", "Pending", "WardState"]

log = logging.getLogger("vigil.station")

# the topics under each bed the station reads (docs/ARCHITECTURE.md "MQTT"), with their QoS
TOPICS: Final = (
    ("status", 1),
    ("session", 1),
    ("alarms/active", 1),
    ("alarms", 1),
    ("cmd/result", 1),
    ("vitals", 0),
)

# how often a value is expected: the monitors stream HR, PR and SpO2 about once a second; a
# cuff determination comes every 5 min in the infusion and every 15 min after it
# (docs/PROTOCOL.md steps 3 and 4), so a cuff value is stale past 15 min times the factor
EXPECTED_INTERVAL_S: Final[dict[str, float]] = {
    "HR": 2.0,
    "PR": 2.0,
    "SPO2": 2.0,
    "RR": 5.0,
    "ETCO2": 5.0,
    "ABP_SYS": 2.0,
    "ABP_DIA": 2.0,
    "ABP_MEAN": 2.0,
    "NIBP_SYS": 900.0,
    "NIBP_DIA": 900.0,
    "NIBP_MEAN": 900.0,
}
# points of the tile's short trend line: one per 10 s over the last 10 minutes
_TREND_POINTS: Final = 60
_TREND_STEP_S: Final = 10.0
_TREND_PARAMS: Final = ("HR", "SPO2")


@dataclass
class Pending:
    """A command the station sent and the bed has not answered (or, for an ack, confirmed)."""

    request_id: str
    bed: str
    cmd: str
    user: str
    rx: float
    alarm_id: str | None = None
    answered: bool = False


@dataclass
class Bed:
    """One bed as the pages show it."""

    ward: str
    bed: str
    status: WireStatus | None = None
    status_rx: float | None = None
    session: WireSession | None = None
    session_rx: float | None = None
    active: list[WireActiveAlarm] = field(default_factory=list)
    # param -> (bed time, station receive time, value or None when invalid)
    vitals: dict[str, tuple[float, float, float | None]] = field(default_factory=dict)
    trend: dict[str, deque[tuple[float, float]]] = field(default_factory=dict)
    # alarm_id -> (user, bed time) of its `acknowledged` event
    acked: dict[str, tuple[str | None, float]] = field(default_factory=dict)
    last_rx: float | None = None

    @property
    def key(self) -> str:
        """`ward/bed`."""
        return f"{self.ward}/{self.bed}"

    def note_trend(self, param: str, t: float, value: float) -> None:
        """Keep one point per 10 s of the tile's trend line (the latest of each step)."""
        points = self.trend.setdefault(param, deque(maxlen=_TREND_POINTS))
        step = t // _TREND_STEP_S * _TREND_STEP_S
        if points and points[-1][0] == step:
            points[-1] = (step, value)
        elif not points or step > points[-1][0]:
            points.append((step, value))


class WardState:
    """Every bed the station has heard of, and the commands it is waiting on."""

    def __init__(self, store: StationStore, *, prefix: str = TOPIC_ROOT) -> None:
        self.store = store
        self.prefix = prefix
        self.beds: dict[str, Bed] = {}
        self.pending: dict[str, Pending] = {}
        # answers of the station's commands, newest last, for the pages (a refusal's reason)
        self.results: deque[dict[str, Any]] = deque(maxlen=50)
        self.dropped: Counter[str] = Counter()
        self._restore()

    # ------------------------------------------------------------------ start-up

    def _restore(self) -> None:
        """The state the station had when it stopped, from its own file."""
        for key, topic, rx, payload in self.store.topics():
            ward, _, bed_id = key.partition("/")
            bed = self._bed(ward, bed_id)
            try:
                self._retained(bed, topic, payload.encode(), rx, persist=False)
            except WireError as exc:
                self.dropped["restore"] += 1
                log.warning(
                    "event=station_restore_dropped bed=%s topic=%s error=%s", key, topic, exc
                )
        for key, param, t, rx, value in self.store.latest_samples():
            ward, _, bed_id = key.partition("/")
            self._bed(ward, bed_id).vitals[param] = (t, rx, value)
        for bed in self.beds.values():
            for e in self.store.alarm_events(bed.key, limit=200):
                if e.get("state") == "acknowledged" and e.get("alarm_id"):
                    bed.acked.setdefault(e["alarm_id"], (e.get("user"), float(e["t"])))

    def _bed(self, ward: str, bed_id: str) -> Bed:
        key = f"{ward}/{bed_id}"
        bed = self.beds.get(key)
        if bed is None:
            bed = self.beds[key] = Bed(ward, bed_id)
        return bed

    # ------------------------------------------------------------------ messages

    def handle(self, topic: str, payload: bytes, rx: float) -> set[str]:
        """Take one message; the keys of the beds it changed (empty if it was dropped)."""
        where = parse_topic(topic, self.prefix)
        if where is None:
            self.dropped["topic"] += 1
            return set()
        ward, bed_id, what = where
        try:
            return self._handle(ward, bed_id, what, payload, rx)
        except WireError as exc:
            self.dropped[what] += 1
            log.warning("event=station_dropped topic=%s error=%s", topic, exc)
            return set()

    def _handle(  # noqa: PLR0911 - one return per topic
        self, ward: str, bed_id: str, what: str, payload: bytes, rx: float
    ) -> set[str]:
        key = f"{ward}/{bed_id}"
        if what in ("status", "session", "alarms/active"):
            if not payload:
                # a retired bed clears its retained topics (docs/ARCHITECTURE.md "MQTT")
                bed = self.beds.get(key)
                if bed is None:
                    return set()
                self.store.drop_topic(key, what)
                if what == "status":
                    del self.beds[key]
                    return {key}
                self._retained(bed, what, b"", rx, persist=False)
                return {key}
            bed = self._bed(ward, bed_id)
            self._retained(bed, what, payload, rx, persist=True)
            bed.last_rx = rx
            return {key}
        if what == "vitals":
            return self._vitals(self._bed(ward, bed_id), payload, rx)
        if what == "alarms":
            return self._alarm(self._bed(ward, bed_id), payload, rx)
        if what == "cmd/result":
            return self._result(key, payload, rx)
        self.dropped["topic"] += 1
        return set()

    def _retained(self, bed: Bed, what: str, payload: bytes, rx: float, *, persist: bool) -> None:
        if what == "status":
            bed.status, bed.status_rx = decode_status(payload), rx
        elif what == "session":
            bed.session = decode_session(payload) if payload else None
            bed.session_rx = rx
        else:
            bed.active = decode_active_alarms(payload) if payload else []
            for a in bed.active:
                if a.state == "acknowledged" and a.alarm_id is not None:
                    self._confirmed(a.alarm_id)
        if persist:
            self.store.put_topic(bed.key, what, rx, payload.decode())

    def _vitals(self, bed: Bed, payload: bytes, rx: float) -> set[str]:
        text = payload.decode(errors="replace").lstrip()
        # a bed publishes one Sample object; tolerate an array of them (vigil's monitor format)
        items = [json.dumps(x) for x in json.loads(text)] if text.startswith("[") else [payload]
        for item in items:
            s = decode_sample(item)
            value = s.number
            bed.vitals[s.param] = (s.t, rx, value)
            if value is not None and s.param in _TREND_PARAMS:
                bed.note_trend(s.param, s.t, value)
            self.store.add_sample(bed.key, s.t, rx, s.param, value)
        bed.last_rx = rx
        return {bed.key}

    def _alarm(self, bed: Bed, payload: bytes, rx: float) -> set[str]:
        e = decode_alarm_event(payload)
        self.store.add_alarm_event(bed.key, rx, e.model_dump(mode="json"))
        if e.state == "acknowledged" and e.alarm_id is not None:
            bed.acked[e.alarm_id] = (e.user, e.t)
            self._confirmed(e.alarm_id)
        bed.last_rx = rx
        return {bed.key}

    def _confirmed(self, alarm_id: str) -> None:
        for rid, p in list(self.pending.items()):
            if p.alarm_id == alarm_id and p.cmd == "ack":
                del self.pending[rid]

    def _result(self, key: str, payload: bytes, rx: float) -> set[str]:
        r = decode_command_result(payload)
        if r.request_id is None or r.request_id not in self.pending:
            return set()  # another console's command: not ours to show
        p = self.pending[r.request_id]
        self.store.set_result(r.request_id, payload.decode())
        p.answered = True
        if not r.ok or p.cmd != "ack":
            # an accepted ack waits for the bed's `acknowledged` event; all else is done
            del self.pending[r.request_id]
        self.results.append(
            {
                "bed": key,
                "request_id": r.request_id,
                "cmd": p.cmd,
                "user": p.user,
                "rx": rx,
                "result": r.model_dump(mode="json"),
            }
        )
        return {key}

    # ------------------------------------------------------------------ commands

    def sent(self, bed: str, command: dict[str, Any], rx: float) -> None:
        """Remember a command the station is about to publish for `bed`."""
        p = Pending(
            request_id=command["request_id"],
            bed=bed,
            cmd=command["cmd"],
            user=command["user"],
            rx=rx,
            alarm_id=command.get("alarm_id"),
        )
        self.pending[p.request_id] = p
        self.store.add_command(p.request_id, bed, rx, p.user, json.dumps(command))

    def send_failed(self, request_id: str, error: str, rx: float) -> str | None:
        """The broker did not take a command: no longer pending; the bed's key."""
        p = self.pending.pop(request_id, None)
        if p is None:
            return None
        self.results.append(
            {
                "bed": p.bed,
                "request_id": request_id,
                "cmd": p.cmd,
                "user": p.user,
                "rx": rx,
                "result": {"ok": False, "error": f"not sent: {error}"},
            }
        )
        return p.bed

    # ------------------------------------------------------------------ for the pages

    def view(self, key: str) -> dict[str, Any] | None:
        """The JSON the pages get for one bed (None: the bed is gone)."""
        bed = self.beds.get(key)
        if bed is None:
            return None
        pending = {
            p.alarm_id: {"user": p.user, "rx": p.rx}
            for p in self.pending.values()
            if p.cmd == "ack" and p.alarm_id and p.bed == key
        }
        return {
            "key": key,
            "ward": bed.ward,
            "bed": bed.bed,
            "status": None if bed.status is None else bed.status.status,
            "status_rx": bed.status_rx,
            "session": None if bed.session is None else bed.session.model_dump(mode="json"),
            "session_rx": bed.session_rx,
            "vitals": {p: {"t": t, "rx": rx, "value": v} for p, (t, rx, v) in bed.vitals.items()},
            "trend": {p: list(points) for p, points in bed.trend.items()},
            "active": [self._alarm_view(bed, a, pending) for a in bed.active],
            "last_rx": bed.last_rx,
        }

    @staticmethod
    def _alarm_view(
        bed: Bed, a: WireActiveAlarm, pending: dict[str, dict[str, Any]]
    ) -> dict[str, Any]:
        user, t = bed.acked.get(a.alarm_id or "", (None, None))
        return {
            **a.model_dump(mode="json"),
            "pending": pending.get(a.alarm_id or ""),
            "acked_by": user,
            "acked_t": t,
        }
