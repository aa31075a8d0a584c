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
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, TextIO

from monitor.wire import TOPIC_ROOT, parse_topic

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
    alarm_log: list[dict[str, Any]] = field(default_factory=list)
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
        try:
            data: Any = json.loads(payload) if payload else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            return []
        lines: list[str] = []
        if kind == "status" and isinstance(data, dict):
            lines += self._status(view, data)
        elif kind == "session" and isinstance(data, dict):
            phase = str(data.get("phase", "none"))
            if phase != view.phase:
                view.phase = phase
                lines.append(self._session_line(bed_id, data))
        elif kind == "vitals" and isinstance(data, dict):
            lines += self._vital(view, data)
        elif kind == "alarms" and isinstance(data, dict):
            self.alarm_log.append(data)
            lines.append(self._alarm_line(data))
        for line in lines:
            self.out.write(line + "\n")
        self.out.flush()
        return lines

    def _status(self, view: BedView, data: dict[str, Any]) -> list[str]:
        online = data.get("status") == "online"
        if online == view.online:
            return []
        view.online = online
        return [f"{'':8} {view.bed:8} bed is {'ONLINE' if online else 'OFFLINE'}"]

    def _session_line(self, bed_id: str, data: dict[str, Any]) -> str:
        t = float(data.get("t", 0.0))
        self.last_t = max(self.last_t, t)
        text = f"{local_time(t)} {bed_id:8} phase -> {data.get('phase')}"
        session = data.get("session") or {}
        if data.get("phase") == "pre" and session:
            text += (
                f"  (patient {session.get('patient_id')}, {session.get('weight_kg')} kg: "
                f"dose {session.get('dose_mg')} mg at {session.get('rate_ml_per_h')} mL/h)"
            )
        baseline = data.get("baseline")
        if data.get("phase") == "infusion" and baseline:
            text += (
                f"  baseline BP {_n(baseline.get('sys0'))}/{_n(baseline.get('dia0'))} mmHg, "
                f"HR {_n(baseline.get('hr0'))}/min, SpO2 {_n(baseline.get('spo2_0'))} %"
            )
        return text

    def _vital(self, view: BedView, data: dict[str, Any]) -> list[str]:
        t = data.get("t")
        param = data.get("param")
        if not isinstance(t, int | float) or not isinstance(param, str):
            return []
        value = data.get("value") if data.get("valid") else None
        view.vitals[param] = (float(t), value if isinstance(value, int | float) else None)
        view.counts[param] += 1
        if t - view.last_vitals_line < self.vitals_every_s or t < self.last_t:
            return []
        view.last_vitals_line = float(t)
        self.last_t = float(t)
        return [self.vitals_line(view, float(t))]

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

    def _alarm_line(self, a: dict[str, Any]) -> str:
        prio = str(a.get("priority", "low"))
        state = str(a.get("state", ""))
        t = float(a.get("t", 0.0))
        self.last_t = max(self.last_t, t)
        alarm_id = str(a.get("alarm_id", a.get("code")))
        if state == "active":
            self._active_since[alarm_id] = t
        text = (
            f"{local_time(t)} {a.get('bed', '?'):8} {_MARK.get(prio, '   ')} "
            f"{prio.upper():6} {a.get('code')} {state.upper()}"
        )
        if state == "escalated":
            text += f" level {a.get('level')}"
            since = self._active_since.get(alarm_id)
            if since is not None:
                text += f" (not acknowledged for {t - since:.0f} s)"
        if state == "acknowledged" and a.get("user"):
            text += f" by {a.get('user')}"
        news = _news(str(a.get("code")), state, str(a.get("message") or ""))
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
