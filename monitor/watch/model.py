"""The nurse console's model: the ward as the console knows it, its screen, its keys.

Pure: no I/O and no clock of its own. The I/O loop (`monitor.watch.app`) hands `WardView`
every message it receives (`handle(topic, payload, now)`), every key pressed (`press(key, now)`,
which returns the commands to publish) and the broker link's state; it draws what `render(now)`
returns and rings the bell `take_bells()` times. `now` is the console's clock (epoch seconds).

What the console reads (docs/ARCHITECTURE.md "MQTT", under `vigil/<ward>/<bed>`):
- `status` (retained): `{"status": "online" | "offline", ...}`; the Last Will says `offline`.
- `session` (retained): `phase`, `audio_paused_until` (bed clock, epoch seconds) and more.
- `alarms/active` (retained): the bed's active alarms, the authority on what is active now.
- `alarms`: alarm events; they ring the bell and say who acknowledged an alarm.
- `vitals`: Sample JSON.
- `cmd/result`: `{"request_id", "ok", "error"?}`, matched to the commands this console sent.

Safety rules of the screen (the reasons are in the comments where they are applied):
- a bed is never shown as fine unless its `status` is `online` and vitals arrived within
  `stale_s`; otherwise it is OFFLINE, STALE or NO STATUS in the alert style;
- a console that is not connected to the broker says so above everything else;
- alarms are listed highest priority first, in IEC 60601-1-8 colours.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar

__all__ = [
    "ANSI",
    "COMMAND_ANSWER_S",
    "DEFAULT_STALE_S",
    "PRIORITY_RANK",
    "Alarm",
    "Bed",
    "Line",
    "Outgoing",
    "Segment",
    "Style",
    "WardView",
    "iso_local",
    "plain_text",
    "to_ansi",
]

# A bed whose vitals stopped for this long is STALE (issue 6 item 5: "> 30 s").
DEFAULT_STALE_S: Final = 30.0
# A command with no `…/cmd/result` after this long is shown as unanswered: the bed may be down.
COMMAND_ANSWER_S: Final = 10.0
# IEC 60601-1-8 priorities, highest first.
PRIORITY_RANK: Final = {"high": 0, "medium": 1, "low": 2}
# Remembered alarm ids (bell already rung, who acknowledged): bounded, oldest forgotten first.
_MEMORY: Final = 2000
_RECENT_EVENTS: Final = 6
_RECENT_COMMANDS: Final = 4
_V = TypeVar("_V")
_KINDS: Final = frozenset({"status", "session", "vitals", "alarms", "alarms/active", "cmd/result"})

Style = Literal["plain", "bold", "dim", "high", "medium", "low", "alert"]

# SGR codes per style. Priority colours are IEC 60601-1-8's (red high, yellow medium, cyan low),
# the same codes as the line console of `vigil demo` (monitor/console.py), so the two consoles
# never disagree. "alert" (bold inverse red) marks what must not be read as fine: an offline or
# stale bed, a lost broker link, a refused or unanswered command.
ANSI: Final[dict[Style, str]] = {
    "plain": "",
    "bold": "\x1b[1m",
    "dim": "\x1b[2m",
    "high": "\x1b[1;31m",
    "medium": "\x1b[33m",
    "low": "\x1b[36m",
    "alert": "\x1b[1;7;31m",
}
_PRIORITY_STYLE: Final[dict[str, Style]] = {"high": "high", "medium": "medium", "low": "low"}
_RESET: Final = "\x1b[0m"
_MARK: Final = {"high": "***", "medium": "** ", "low": "*  "}
# Vitals in the order a nurse reads them; these are always shown (as "--" when absent).
_ALWAYS: Final = ("HR", "SPO2")
_OPTIONAL: Final = ("PR", "RR", "ETCO2")
_NIBP: Final = ("NIBP_SYS", "NIBP_DIA", "NIBP_MEAN")
_ABP: Final = ("ABP_SYS", "ABP_DIA", "ABP_MEAN")
_LABEL: Final = {"HR": "HR", "SPO2": "SpO2", "PR": "PR", "RR": "RR", "ETCO2": "EtCO2"}
_UNIT: Final = {"SPO2": "%"}
# Parameters sampled continuously: an old value of these is stale. A cuff (NIBP) reading is
# periodic by nature, so its age is shown but it is not flagged.
_CONTINUOUS: Final = frozenset({"HR", "PR", "SPO2", "RR", "ETCO2", *_ABP})


@dataclass(frozen=True, slots=True)
class Segment:
    """A run of text in one style."""

    text: str
    style: Style = "plain"


Line = tuple[Segment, ...]


def plain_text(line: Line) -> str:
    """The characters of a line without styles (what `tmux capture-pane -p` shows)."""
    return "".join(s.text for s in line)


def to_ansi(line: Line, width: int) -> str:
    """A line as terminal text: at most `width` characters, each styled run reset after it."""
    out: list[str] = []
    room = width
    for seg in line:
        if room <= 0:
            break
        text = seg.text[:room]
        room -= len(text)
        code = ANSI[seg.style]
        out.append(f"{code}{text}{_RESET}" if code else text)
    return "".join(out)


def iso_local(t: float, *, date: bool = True) -> str:
    """ISO 8601 in the local zone with its offset (the time alone unless `date`)."""
    text = dt.datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")
    return text if date else text[11:]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A command to publish: QoS 1 on `topic` (a bed's `…/cmd`)."""

    topic: str
    payload: bytes
    request_id: str


@dataclass(slots=True)
class Vital:
    """The latest sample of one parameter: `t` on the bed's clock, `value` None if invalid."""

    t: float
    value: float | None


@dataclass(slots=True)
class Alarm:
    """One entry of a bed's retained `…/alarms/active` list."""

    alarm_id: str | None
    code: str
    priority: str
    state: str
    since: float | None
    param: str | None = None
    value: float | None = None
    limit: float | None = None
    level: int | None = None
    latched: bool = False

    @property
    def rank(self) -> int:
        """Priority rank, 0 for high; an unknown priority sorts first, never hidden below."""
        return PRIORITY_RANK.get(self.priority, -1)

    @property
    def acknowledged(self) -> bool:
        """Whether a nurse acknowledged it."""
        return self.state == "acknowledged"


@dataclass(slots=True)
class Bed:
    """What the console knows about one bed; `key` is `<ward>/<bed>`."""

    ward: str
    bed: str
    first_seen: float
    status: str | None = None
    status_since: float | None = None
    phase: str | None = None
    audio_paused_until: float | None = None
    vitals: dict[str, Vital] = field(default_factory=dict)
    # console clock, so staleness does not depend on the bed's clock being right
    last_vitals_rx: float | None = None
    alarms: list[Alarm] = field(default_factory=list)

    @property
    def key(self) -> str:
        """`<ward>/<bed>`, as in the alarm events' `bed` field."""
        return f"{self.ward}/{self.bed}"

    @property
    def prefix(self) -> str:
        """The bed's topic prefix (docs/ARCHITECTURE.md default `vigil/<ward>/<bed>`)."""
        return f"vigil/{self.ward}/{self.bed}"

    def audio_paused(self, now: float) -> bool:
        """Whether the bed's audible signal is paused at `now` (its session says until when)."""
        return self.audio_paused_until is not None and now < self.audio_paused_until

    def unacknowledged(self) -> list[Alarm]:
        """Its unacknowledged alarms, highest priority first, oldest first within one."""
        return [a for a in self.alarms if not a.acknowledged]


@dataclass(slots=True)
class _Sent:
    """A command this console sent and what became of it."""

    request_id: str
    label: str
    sent_at: float
    ok: bool | None = None
    error: str | None = None


Selection = tuple[str, str | None]  # (bed key, alarm id or None for the bed row)


class WardView:
    """The ward as seen from the nurses' station; see the module docstring for the contract."""

    def __init__(
        self,
        *,
        user: str,
        ward: str | None = None,
        stale_s: float = DEFAULT_STALE_S,
        broker: str = "",
    ) -> None:
        self.user = user
        self.ward = ward
        self.stale_s = stale_s
        self.broker = broker
        self.beds: dict[str, Bed] = {}
        self.connected = False
        self.link_error: str | None = None
        self.selection: Selection | None = None
        self.quit = False
        self.malformed = 0
        self.notice: str | None = None
        self._bells = 0
        self._rung: dict[str, None] = {}
        self._ack_user: dict[str, str] = {}
        self._events: deque[tuple[float, dict[str, Any]]] = deque(maxlen=_RECENT_EVENTS)
        self._sent: deque[_Sent] = deque(maxlen=_RECENT_COMMANDS)

    # ------------------------------------------------------------------ inputs

    def set_link(self, *, connected: bool, error: str | None = None) -> None:
        """The broker link went up or down (`error` says why it is down)."""
        self.connected = connected
        if error is not None or connected:
            self.link_error = error

    def handle(self, topic: str, payload: bytes, now: float) -> None:
        """Digest one message; anything that is not a well-formed ward message is ignored."""
        parts = topic.split("/")
        if len(parts) < 4 or parts[0] != "vigil" or (self.ward and parts[1] != self.ward):
            return
        kind = "/".join(parts[3:])
        if kind not in _KINDS:
            return
        if not payload:
            return  # a retained message being cleared: nothing to show
        try:
            data: Any = json.loads(payload)
        except (ValueError, RecursionError):
            self.malformed += 1
            return
        bed = self._bed(parts[1], parts[2], now)
        handlers = {
            "status": lambda: self._status(bed, data, now),
            "session": lambda: self._session(bed, data),
            "vitals": lambda: self._vital(bed, data, now),
            "alarms": lambda: self._alarm_event(bed, data, now),
            "alarms/active": lambda: self._active(bed, data, now),
            "cmd/result": lambda: self._result(data),
        }
        if not handlers[kind]():
            self.malformed += 1

    def press(self, key: str, now: float) -> list[Outgoing]:
        """Act on one key; return the commands to publish.

        Keys: `up`/`down` (or `k`/`j`) move the selection over beds and their alarms, `1`-`9`
        select a bed, `esc` clears the selection (then `a` takes the ward's highest
        unacknowledged alarm), `a` acknowledges, `p` pauses the audio of the selected bed,
        `q` quits.
        """
        self.notice = None
        if key in {"up", "k", "down", "j"}:
            self._move(-1 if key in {"up", "k"} else 1)
        elif key.isdigit() and key != "0":
            beds = self._ordered_beds()
            index = int(key) - 1
            if index < len(beds):
                self.selection = (beds[index].key, None)
        elif key == "esc":
            self.selection = None
        elif key == "q":
            self.quit = True
        elif key == "a":
            return self._ack(now)
        elif key == "p":
            return self._audio_pause(now)
        return []

    def take_bells(self) -> int:
        """How many bells to ring now (each new high-priority alarm once); resets the count."""
        n, self._bells = self._bells, 0
        return n

    # ------------------------------------------------------------------ message handlers

    def _bed(self, ward: str, bed_id: str, now: float) -> Bed:
        key = f"{ward}/{bed_id}"
        bed = self.beds.get(key)
        if bed is None:
            bed = self.beds[key] = Bed(ward, bed_id, first_seen=now)
        return bed

    def _status(self, bed: Bed, data: Any, now: float) -> bool:
        if not isinstance(data, dict) or data.get("status") not in {"online", "offline"}:
            return False
        if data["status"] != bed.status:
            bed.status = data["status"]
            bed.status_since = now
        return True

    def _session(self, bed: Bed, data: Any) -> bool:
        if not isinstance(data, dict):
            return False
        phase = data.get("phase")
        bed.phase = phase if isinstance(phase, str) else None
        bed.audio_paused_until = _float(data.get("audio_paused_until"))
        return True

    def _vital(self, bed: Bed, data: Any, now: float) -> bool:
        if not isinstance(data, dict):
            return False
        t, param, value = _float(data.get("t")), data.get("param"), _float(data.get("value"))
        if t is None or not isinstance(param, str):
            return False
        bed.vitals[param] = Vital(t, value if data.get("valid") is True else None)
        bed.last_vitals_rx = now
        return True

    def _alarm_event(self, bed: Bed, data: Any, now: float) -> bool:
        if not isinstance(data, dict) or not isinstance(data.get("code"), str):
            return False
        alarm_id, state = data.get("alarm_id"), data.get("state")
        self._events.append((now, {**data, "bed": bed.key}))
        if isinstance(alarm_id, str):
            if state == "acknowledged" and isinstance(data.get("user"), str):
                _remember(self._ack_user, alarm_id, data["user"])
            if state == "active":
                self._maybe_ring(bed, alarm_id, data.get("priority"), now)
        return True

    def _active(self, bed: Bed, data: Any, now: float) -> bool:
        if not isinstance(data, list):
            return False
        alarms: list[Alarm] = []
        for item in data:
            if not isinstance(item, dict) or not isinstance(item.get("code"), str):
                self.malformed += 1
                continue
            alarm = Alarm(
                alarm_id=_str(item.get("alarm_id")),
                code=item["code"],
                priority=str(item.get("priority", "?")),
                state=str(item.get("state", "active")),
                since=_float(item.get("since")),
                param=_str(item.get("param")),
                value=_float(item.get("value")),
                limit=_float(item.get("limit")),
                level=item["level"] if isinstance(item.get("level"), int) else None,
                latched=item.get("latched") is True,
            )
            alarms.append(alarm)
            # A high alarm first learnt from the retained list (the console started after it
            # was raised) is new to this station: it rings too, once.
            if alarm.alarm_id is not None and alarm.state == "active":
                self._maybe_ring(bed, alarm.alarm_id, alarm.priority, now)
        alarms.sort(key=lambda a: (a.rank, a.since if a.since is not None else math.inf))
        bed.alarms = alarms
        return True

    def _result(self, data: Any) -> bool:
        if not isinstance(data, dict):
            return False
        request_id = data.get("request_id")
        for sent in self._sent:
            if sent.request_id == request_id:
                sent.ok = data.get("ok") is True
                error = data.get("error")
                sent.error = str(error) if error is not None else None
        return True  # the results of other consoles' commands are not ours to show

    def _maybe_ring(self, bed: Bed, alarm_id: str, priority: object, now: float) -> None:
        # IEC 60601-1-8: only a high-priority alarm calls for the station's audible signal here
        # (medium and low are seen on screen), once per alarm, and not while a nurse has paused
        # the bed's audio (docs/ALARMS.md: audio pause, 120 s).
        if priority != "high" or alarm_id in self._rung:
            return
        _remember(self._rung, alarm_id, None)
        if not bed.audio_paused(now):
            self._bells += 1

    # ------------------------------------------------------------------ keys

    def _ordered_beds(self) -> list[Bed]:
        # fixed order by ward and bed: a bed keeps its place (and its number key) on screen
        return [self.beds[k] for k in sorted(self.beds)]

    def _rows(self) -> list[Selection]:
        rows: list[Selection] = []
        for bed in self._ordered_beds():
            rows.append((bed.key, None))
            rows.extend((bed.key, a.alarm_id) for a in bed.alarms if a.alarm_id is not None)
        return rows

    def _current(self) -> Selection | None:
        """The selection if it still exists; a cleared alarm's selection falls back to its bed."""
        if self.selection is None:
            return None
        key, alarm_id = self.selection
        if key not in self.beds:
            return None
        if alarm_id is not None and not any(a.alarm_id == alarm_id for a in self.beds[key].alarms):
            return (key, None)
        return self.selection

    def _move(self, step: int) -> None:
        rows = self._rows()
        if not rows:
            return
        current = self._current()
        if current is None:
            self.selection = rows[0] if step > 0 else rows[-1]
            return
        index = rows.index(current) + step
        self.selection = rows[max(0, min(len(rows) - 1, index))]

    def _target_alarm(self) -> tuple[Bed, Alarm] | str:
        """The alarm `a` acknowledges, or why there is none."""
        current = self._current()
        if current is not None:
            bed = self.beds[current[0]]
            if current[1] is not None:
                alarm = next(a for a in bed.alarms if a.alarm_id == current[1])
                if alarm.acknowledged:
                    return f"{alarm.code} on {bed.key} is already acknowledged"
                return bed, alarm
            unacked = bed.unacknowledged()
            if not unacked:
                return f"no unacknowledged alarm on {bed.key}"
            return bed, unacked[0]
        candidates = [
            (a.rank, a.since or math.inf, b.key, b, a)
            for b in self.beds.values()
            for a in b.unacknowledged()
        ]
        if not candidates:
            return "no unacknowledged alarm on the ward"
        _, _, _, bed, alarm = min(candidates, key=lambda c: c[:3])
        return bed, alarm

    def _ack(self, now: float) -> list[Outgoing]:
        target = self._target_alarm()
        if isinstance(target, str):
            self.notice = target
            return []
        bed, alarm = target
        if alarm.alarm_id is None:
            self.notice = f"{alarm.code} on {bed.key} has no alarm_id: acknowledge it at the bed"
            return []
        return self._command(
            bed, {"cmd": "ack", "alarm_id": alarm.alarm_id}, f"ack {alarm.code} on {bed.key}", now
        )

    def _audio_pause(self, now: float) -> list[Outgoing]:
        current = self._current()
        if current is not None:
            bed = self.beds[current[0]]
        else:
            target = self._target_alarm()
            if not isinstance(target, str):
                bed = target[0]
            elif len(self.beds) == 1:
                (bed,) = self.beds.values()
            else:
                self.notice = "select a bed (up/down or 1-9) to pause its audio"
                return []
        return self._command(bed, {"cmd": "audio_pause"}, f"audio pause on {bed.key}", now)

    def _command(self, bed: Bed, body: dict[str, Any], label: str, now: float) -> list[Outgoing]:
        # A command that cannot reach the bed is refused here, and said so, rather than queued:
        # a late acknowledgement is worse than none the nurse knows about (docs/DESIGN.md P11).
        if not self.connected:
            self.notice = f"{label}: not sent, the console is not connected to the broker"
            return []
        if bed.status == "offline":
            self.notice = f"{label}: not sent, {bed.key} is OFFLINE"
            return []
        request_id = uuid.uuid4().hex
        command = {**body, "request_id": request_id, "user": self.user}
        self._sent.append(_Sent(request_id, label, now))
        return [Outgoing(f"{bed.prefix}/cmd", json.dumps(command).encode(), request_id)]

    def send_failed(self, request_id: str, error: str) -> None:
        """The I/O loop could not publish a command: show it as not sent."""
        for sent in self._sent:
            if sent.request_id == request_id:
                sent.ok, sent.error = False, f"not sent: {error}"

    # ------------------------------------------------------------------ screen

    def bed_condition(self, bed: Bed, now: float) -> tuple[str, Style]:
        """How the bed's liveness is shown: only a live, fed bed reads `online` (plain)."""
        if bed.status == "offline":
            since = f" since {iso_local(bed.status_since, date=False)}" if bed.status_since else ""
            return f"OFFLINE{since}", "alert"
        if bed.status is None:
            return "NO STATUS", "alert"
        last = bed.last_vitals_rx if bed.last_vitals_rx is not None else bed.first_seen
        if now - last > self.stale_s:
            what = "no vitals" if bed.last_vitals_rx is None else "no vitals for"
            age = f" {now - last:.0f} s" if bed.last_vitals_rx is not None else ""
            return f"STALE: {what}{age}", "alert"
        return "online", "plain"

    def render(self, now: float, *, height: int | None = None) -> list[Line]:
        """The screen at `now`: header, one block per bed, recent events, commands, keys."""
        ward = self.ward or "all wards"
        head: list[Line] = [
            (
                Segment("VIGIL WATCH", "bold"),
                Segment(f"  {ward}  broker {self.broker}  user {self.user}  {iso_local(now)}"),
            ),
            (
                Segment(
                    "Decision support, not a certified medical device: the bedside monitors' "
                    "own alarms remain primary.",
                    "dim",
                ),
            ),
        ]
        if not self.connected:
            why = f" ({self.link_error})" if self.link_error else ""
            head.append(
                (Segment(f"NOT CONNECTED TO THE WARD BROKER{why}: NOTHING BELOW IS LIVE", "alert"),)
            )
        head.append(())
        body: list[Line] = []
        current = self._current()
        for number, bed in enumerate(self._ordered_beds(), start=1):
            body.append(self._bed_line(number, bed, now, selected=current == (bed.key, None)))
            for alarm in bed.alarms:
                selected = current is not None and current == (bed.key, alarm.alarm_id)
                body.append(self._alarm_line(alarm, now, selected=selected))
        if not self.beds:
            body.append((Segment(f"no bed seen yet under vigil/{self.ward or '+'}/+", "dim"),))
        foot: list[Line] = [(), (Segment("Recent alarm events", "bold"),)]
        foot += [self._event_line(t, e) for t, e in reversed(self._events)] or [
            (Segment("  none yet", "dim"),)
        ]
        foot += [(), (Segment("Commands", "bold"),)]
        foot += [self._sent_line(s, now) for s in reversed(self._sent)] or [
            (Segment("  none yet", "dim"),)
        ]
        if self.notice:
            foot.append((Segment(f"  {self.notice}", "alert"),))
        foot.append(
            (
                Segment(
                    "keys: up/down select  1-9 bed  Esc no selection  a acknowledge (selected, "
                    "else highest unacknowledged)  p pause audio  q quit",
                    "dim",
                ),
            )
        )
        if height is not None and len(head) + len(body) + len(foot) > height:
            room = max(0, height - len(head) - len(foot) - 1)
            hidden = len(body) - room
            body = [
                *body[:room],
                (Segment(f"... {hidden} more rows: enlarge the window", "alert"),),
            ]
        return head + body + foot

    def _bed_line(self, number: int, bed: Bed, now: float, *, selected: bool) -> Line:
        condition, style = self.bed_condition(bed, now)
        segs = [
            Segment(f"{'>' if selected else ' '}[{number}] ", "bold" if selected else "plain"),
            Segment(f"{bed.key:<14}", "bold"),
            Segment(f"{bed.phase or '?':<9}"),
            Segment(f"{condition:<28}", style),
        ]
        for param in _ALWAYS:
            segs += self._vital_segments(bed, param, now)
        segs += self._nibp_segments(bed, _NIBP, "NIBP", now)
        if any(p in bed.vitals for p in _ABP):
            segs += self._nibp_segments(bed, _ABP, "ABP", now)
        for param in _OPTIONAL:
            if param in bed.vitals:
                segs += self._vital_segments(bed, param, now)
        if bed.audio_paused(now) and bed.audio_paused_until is not None:
            segs.append(
                Segment(
                    f" audio paused until {iso_local(bed.audio_paused_until, date=False)}", "medium"
                )
            )
        return tuple(segs)

    def _vital_segments(self, bed: Bed, param: str, now: float) -> list[Segment]:
        label = _LABEL.get(param, param)
        vital = bed.vitals.get(param)
        if vital is None:
            return [Segment(f" {label} --  ")]
        value = "--" if vital.value is None else f"{vital.value:g}{_UNIT.get(param, '')}"
        age = max(0.0, now - vital.t)
        style: Style = "alert" if param in _CONTINUOUS and age > self.stale_s else "plain"
        return [Segment(f" {label} "), Segment(value, "bold"), Segment(f" ({age:.0f}s) ", style)]

    def _nibp_segments(
        self, bed: Bed, params: tuple[str, ...], label: str, now: float
    ) -> list[Segment]:
        sys_, dia, mean = (bed.vitals.get(p) for p in params)
        if sys_ is None and dia is None:
            return [Segment(f" {label} --/--  ")]

        def v(x: Vital | None) -> str:
            return "--" if x is None or x.value is None else f"{x.value:g}"

        text = f"{v(sys_)}/{v(dia)}" + (f" ({v(mean)})" if mean is not None else "")
        newest = max(x.t for x in (sys_, dia) if x is not None)
        age = max(0.0, now - newest)
        style: Style = "alert" if label == "ABP" and age > self.stale_s else "plain"
        return [Segment(f" {label} "), Segment(text, "bold"), Segment(f" ({age:.0f}s) ", style)]

    def _alarm_line(self, alarm: Alarm, now: float, *, selected: bool) -> Line:
        style = _PRIORITY_STYLE.get(alarm.priority, "alert")
        state = alarm.state.upper()
        if alarm.acknowledged:
            user = self._ack_user.get(alarm.alarm_id or "")
            state += f" by {user}" if user else ""
        elif alarm.level:
            state += f" (escalated, level {alarm.level})"
        detail = ""
        if alarm.param:
            value = f"{alarm.value:g}" if alarm.value is not None else "?"
            limit = f" (limit {alarm.limit:g})" if alarm.limit is not None else ""
            detail = f"{alarm.param} {value}{limit}"
        since = ""
        if alarm.since is not None:
            since = (
                f"since {iso_local(alarm.since, date=False)} ({max(0.0, now - alarm.since):.0f}s)"
            )
        return (
            Segment(f"    {'>' if selected else ' '} ", "bold"),
            Segment(
                f"{_MARK.get(alarm.priority, '???')} {alarm.priority.upper():<6} "
                f"{alarm.code:<22} {state:<34}",
                style,
            ),
            Segment(f" {detail:<26} {since}{'  latched' if alarm.latched else ''}"),
        )

    def _event_line(self, received: float, e: dict[str, Any]) -> Line:
        priority = str(e.get("priority", "?"))
        style = _PRIORITY_STYLE.get(priority, "alert")
        t = _float(e.get("t"))
        state = str(e.get("state", "?")).upper()
        if e.get("level"):
            state += f" (level {e.get('level')})"
        if e.get("user"):
            state += f" by {e.get('user')}"
        return (
            Segment(f"  {iso_local(t if t is not None else received, date=False)} "),
            Segment(
                f"{e.get('bed', '?'):<14} {priority.upper():<6} {e.get('code')} {state}", style
            ),
        )

    def _sent_line(self, sent: _Sent, now: float) -> Line:
        when = f"  {iso_local(sent.sent_at, date=False)} {sent.label} by {self.user}: "
        if sent.ok is True:
            return (Segment(when), Segment("accepted", "bold"))
        if sent.ok is False:
            return (Segment(when), Segment(f"REFUSED: {sent.error or 'no reason given'}", "alert"))
        if now - sent.sent_at > COMMAND_ANSWER_S:
            return (Segment(when), Segment(f"NO ANSWER after {COMMAND_ANSWER_S:g} s", "alert"))
        return (Segment(when), Segment("sent, waiting for the bed", "dim"))


def _float(x: object) -> float | None:
    """A finite JSON number as a float; None for anything else (booleans included)."""
    if isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x):
        return float(x)
    return None


def _str(x: object) -> str | None:
    return x if isinstance(x, str) else None


def _remember(memory: dict[str, _V], key: str, value: _V) -> None:
    memory[key] = value
    if len(memory) > _MEMORY:
        del memory[next(iter(memory))]
