"""A line console for the ward: alarms and vitals as a nurse reads them.

It subscribes to every bed under its topic root (`root`, the beds' `[broker] prefix` less
`<ward>/<bed>`; `vigil` by default) and prints one line per alarm event and per phase
change, and a vitals line per bed at a fixed simulated interval. Colours follow IEC 60601-1-8
(red high, yellow medium, cyan low) when the output is a terminal. Times are shown in the local
time zone with its offset, so a ward in any zone reads them unambiguously.

Times never go backwards from one line to the next. Alarm and phase lines carry the bed's time
of the event. A vitals line is a periodic summary of readings that travel behind the alarms (the
bed sends alarms first): one whose newest reading is older than a line already printed waits for
a later reading, rather than print an earlier time under a later one.

An event's message is printed only for what it adds to the code and state already on the line:
an escalation says how long the alarm has gone unacknowledged, an acknowledgement who did it.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import TextIO

from monitor.wire import (
    TOPIC_ROOT,
    WireAlarmEvent,
    WireError,
    WireSample,
    WireSession,
    WireStatus,
    decode_alarm_event,
    decode_sample,
    decode_session,
    decode_status,
    parse_topic,
)

__all__ = ["BedView", "LineConsole"]

_COLOURS = {"high": "\x1b[1;31m", "medium": "\x1b[33m", "low": "\x1b[36m"}
_RESET = "\x1b[0m"
_MARK = {"high": "***", "medium": "** ", "low": "*  "}


def local_time(t: float) -> str:
    """HH:MM:SS±HH:MM in the local zone (ISO 8601 time with offset)."""
    return dt.datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")[11:]


@dataclass
class BedView:
    """What the console knows about one bed."""

    bed: str
    phase: str = "none"
    online: bool = False
    vitals: dict[str, tuple[float, float | None]] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    last_vitals_line: float = -math.inf


@dataclass
class LineConsole:
    """Formats ward messages into lines; `handle(topic, payload)` returns what it printed."""

    out: TextIO
    colour: bool = False
    vitals_every_s: float = 60.0
    root: str = TOPIC_ROOT
    beds: dict[str, BedView] = field(default_factory=dict)
    alarm_log: list[WireAlarmEvent] = field(default_factory=list)
    # messages refused, by topic kind: a payload that is not what its topic carries
    # (docs/ARCHITECTURE.md "MQTT") is counted, never printed as if it were
    dropped: Counter[str] = field(default_factory=Counter)
    # the latest time printed on any line (epoch s): no later line shows an earlier one
    last_t: float = field(default=-math.inf, init=False)
    # alarm_id -> time it became active, for "not acknowledged for N s" on escalation
    _active_since: dict[str, float] = field(default_factory=dict, init=False, repr=False)

    def handle(self, topic: str, payload: bytes) -> list[str]:
        """Digest one message from `<root>/<ward>/<bed>/...`."""
        where = parse_topic(topic, self.root)
        if where is None:
            return []
        bed_id, kind = where.key, where.kind
        view = self.beds.setdefault(bed_id, BedView(bed_id))
        lines: list[str] = []
        try:
            if kind == "status" and payload:  # an empty retained payload clears the topic
                lines += self._status(view, decode_status(payload))
            elif kind == "session" and payload:
                session = decode_session(payload)
                if session.phase.value != view.phase:
                    view.phase = session.phase.value
                    lines.append(self._session_line(bed_id, session))
            elif kind == "vitals":
                lines += self._vital(view, decode_sample(payload))
            elif kind == "alarms":
                event = decode_alarm_event(payload)
                self.alarm_log.append(event)
                lines.append(self._alarm_line(event))
        except WireError:
            self.dropped[kind] += 1
            return []
        for line in lines:
            self.out.write(line + "\n")
        self.out.flush()
        return lines

    def _status(self, view: BedView, status: WireStatus) -> list[str]:
        online = status.status == "online"
        if online == view.online:
            return []
        view.online = online
        return [f"{'':8} {view.bed:8} bed is {'ONLINE' if online else 'OFFLINE'}"]

    def _session_line(self, bed_id: str, data: WireSession) -> str:
        t = data.t
        self.last_t = max(self.last_t, t)
        phase = data.phase.value
        text = f"{local_time(t)} {bed_id:8} phase -> {phase}"
        session = data.session
        if phase == "pre" and session is not None:
            text += (
                f"  (patient {session.patient_id}, {session.weight_kg} kg: "
                f"dose {session.dose_mg} mg at {session.rate_ml_per_h} mL/h)"
            )
        baseline = data.baseline
        if phase == "infusion" and baseline is not None:
            text += (
                f"  baseline BP {_n(baseline.sys0)}/{_n(baseline.dia0)} mmHg, "
                f"HR {_n(baseline.hr0)}/min, SpO2 {_n(baseline.spo2_0)} %"
            )
        return text

    def _vital(self, view: BedView, sample: WireSample) -> list[str]:
        t, param = sample.t, sample.param.value
        view.vitals[param] = (t, sample.value if sample.valid else None)
        view.counts[param] += 1
        if t - view.last_vitals_line < self.vitals_every_s or t < self.last_t:
            return []
        view.last_vitals_line = t
        self.last_t = t
        return [self.vitals_line(view, t)]

    def vitals_line(self, view: BedView, now: float) -> str:
        """The latest vitals of a bed with the age of the cuff reading."""

        def latest(param: str) -> str:
            got = view.vitals.get(param)
            return "--" if got is None or got[1] is None else f"{got[1]:g}"

        bp = "--/--"
        sys_ = view.vitals.get("NIBP_SYS")
        if sys_ is not None:
            age = (now - sys_[0]) / 60
            bp = f"{latest('NIBP_SYS')}/{latest('NIBP_DIA')} ({age:.0f} min ago)"
        return (
            f"{local_time(now)} {view.bed:8} {view.phase:8} HR {latest('HR'):>3}  "
            f"SpO2 {latest('SPO2'):>3} %  BP {bp}"
        )

    def _alarm_line(self, a: WireAlarmEvent) -> str:
        prio, state, t = a.priority.value, a.state.value, a.t
        self.last_t = max(self.last_t, t)
        alarm_id = a.alarm_id or a.code
        if state == "active":
            self._active_since[alarm_id] = t
        text = (
            f"{local_time(t)} {a.bed or '?':8} {_MARK.get(prio, '   ')} "
            f"{prio.upper():6} {a.code} {state.upper()}"
        )
        if state == "escalated":
            text += f" level {a.level}"
            since = self._active_since.get(alarm_id)
            if since is not None:
                text += f" (not acknowledged for {t - since:.0f} s)"
        if state == "acknowledged" and a.user:
            text += f" by {a.user}"
        news = _news(a.code, state, a.message)
        if news:
            text += f": {news}"
        if self.colour:
            text = f"{_COLOURS.get(prio, '')}{text}{_RESET}"
        return text


def _news(code: str, state: str, message: str) -> str:
    """What `message` says beyond the code and state the line already shows ("" for nothing).

    An escalation's message only restates code and level, which the line shows; other messages
    lose a leading repetition of the code ("BP_CRISIS acknowledged" says "acknowledged").
    """
    if state == "escalated":
        return ""
    rest = message.removeprefix(code).strip() if message.startswith(f"{code} ") else message
    return "" if rest.lower() == state else rest


def _n(x: object) -> str:
    return f"{x:g}" if isinstance(x, int | float) else "--"
