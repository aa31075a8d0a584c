"""The nurse console's model: the ward as the console knows it, its screen, its keys.

Pure: no I/O and no clock of its own. The I/O loop (`monitor.watch.app`) hands `WardView`
every message it receives (`handle(topic, payload, now, retained=)`), every key pressed
(`press(key, now)`, which returns the commands to publish) and the broker link's state; it draws
what `render(now, height=, width=)` returns and rings the bell `take_bells()` times. `now` is the
console's clock (epoch seconds); `retained` says the broker replayed a stored message.

What the console reads (docs/ARCHITECTURE.md "MQTT", under `vigil/<ward>/<bed>`):
- `status` (retained): `{"status": "online" | "offline", ...}`; the Last Will says `offline`.
- `session` (retained): `phase`, `audio_paused_until` (bed clock, epoch seconds) and more.
- `alarms/active` (retained): the bed's active alarms, the authority on what is active now.
- `alarms`: alarm events; they ring the bell and say who acknowledged an alarm.
- `vitals`: Sample JSON.
- `cmd/result`: `{"request_id", "ok", "error"?}`, matched to the commands this console sent.
An empty payload clears a retained topic: an empty `status` retires the bed (README "Retiring a
bed"), and it leaves the screen.

Safety rules of the screen (the reasons are in the comments where they are applied):
- a bed is never shown as fine unless its `status` is `online` and vitals arrived within
  `stale_s`; otherwise it is OFFLINE, STALE or NO STATUS in the alert style;
- a console that is not connected to the broker says so above everything else;
- alarms are listed highest priority first, in IEC 60601-1-8 colours;
- nothing is cut off at the right edge: a row that does not fit the width is wrapped onto
  indented continuation lines (a bed becomes two or more lines), measured in terminal cells
  (`display_width`), so every vital sign and every alarm's value and limit stay on screen; a
  screen too short for every row leaves out whole rows, and says how many;
- a bed offline for longer than `hide_offline_s` is left out, and a line names it.

Whose time (the rule for every age and deadline on screen): a bed's times are the bed's clock,
which need not be the console's (a simulation runs it faster, a bed's clock may be off). Each bed
has a `BedClock`, an estimate of the bed's clock now, from the newest time the bed has sent
(`t` of a sample, an alarm event, its session or online status) and when that message arrived:
`bed now = newest t + (console now - its arrival) * rate`. `rate` is 1 unless the bed's times
advanced more than 5 % faster or slower than the console's over at least 10 s of messages (a
simulation), then it is the rate measured since the bed's last online status. Messages the broker
replays as retained say nothing about the bed's clock now and are not used; until a bed has
sent a live message its clock is taken to be the console's. On that clock: the age of a vital
(`bed now - its t`), of an alarm (`bed now - since`), and the end of an audio pause. STALE and
OFFLINE count from when this console received the bed's last vitals or its offline status (so
a wrong bed clock can never make a silent bed look fed), in the bed's seconds (`* rate`); the
offline time is also what `hide_offline_s` is compared with. The header shows the console's
clock, a bed whose clock differs from it by more than 2 s shows its own clock, and what the
console times itself (a command's answer) is on the console's clock.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import unicodedata
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal, TypeVar

from kernel.vocabulary import AlarmState, Priority
from monitor.authority import command_topic
from monitor.commands import Ack, AudioPause, Command
from monitor.wire import (
    TOPIC_ROOT,
    WireAlarmEvent,
    WireCommandResult,
    WireError,
    WireSample,
    WireSession,
    WireStatus,
    bed_prefix,
    decode_active_alarms,
    decode_alarm_event,
    decode_command_result,
    decode_sample,
    decode_session,
    decode_status,
    encode_command,
    parse_topic,
)

__all__ = [
    "ANSI",
    "COMMAND_ANSWER_S",
    "DEFAULT_STALE_S",
    "Alarm",
    "Bed",
    "BedClock",
    "Cell",
    "Line",
    "Outgoing",
    "Segment",
    "Style",
    "WardView",
    "display_width",
    "flow",
    "iso_local",
    "plain_text",
    "to_ansi",
]

# A bed whose vitals stopped for this long is STALE (issue 6 item 5: "> 30 s").
DEFAULT_STALE_S: Final = 30.0
# A bed offline for longer than this is no longer shown (0: never hidden); `--hide-offline-after`.
DEFAULT_HIDE_OFFLINE_S: Final = 3600.0
# A bed clock that runs within this fraction of the console's is taken to run at its pace: the
# arrival of messages jitters by network delay, and a real bed's clock runs at real time.
CLOCK_RATE_TOLERANCE: Final = 0.05
# The console time a bed's messages must span before its clock rate is measured at all.
CLOCK_RATE_SPAN_S: Final = 10.0
# A bed whose clock differs from the console's by more than this shows its own clock.
CLOCK_SHOWN_S: Final = 2.0
# A command with no `…/cmd/result` after this long is shown as unanswered: the bed may be down.
COMMAND_ANSWER_S: Final = 10.0
# IEC 60601-1-8 priorities, highest first.
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


def _char_width(char: str) -> int:
    """Terminal cells of one character: 2 for East Asian wide, 0 for combining and format."""
    if unicodedata.combining(char) or unicodedata.category(char) in {"Mn", "Me", "Cf"}:
        return 0
    return 2 if unicodedata.east_asian_width(char) in {"W", "F"} else 1


def display_width(text: str) -> int:
    """Terminal cells `text` takes (what `wcwidth.wcswidth` counts, for printable text)."""
    return sum(_char_width(c) for c in text)


def _printable(text: str) -> str:
    # Text from the broker (a user name, a refusal) is drawn raw: a control character in it
    # would move the cursor or restyle the screen, so each is drawn as U+FFFD instead.
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else "\ufffd" for c in text)


def _cut(text: str, width: int) -> tuple[str, str]:
    """`text` split after at most `width` cells (a wide character never straddles the edge)."""
    used = 0
    for i, char in enumerate(text):
        used += _char_width(char)
        if used > width:
            return text[:i], text[i:]
    return text, ""


def to_ansi(line: Line, width: int) -> str:
    """A line as terminal text: at most `width` cells, each styled run reset after it."""
    out: list[str] = []
    room = width
    for seg in line:
        if room <= 0:
            break
        text, _ = _cut(_printable(seg.text), room)
        if not text:
            break  # a wide character that does not fit: nothing after it is drawn either
        room -= display_width(text)
        code = ANSI[seg.style]
        out.append(f"{code}{text}{_RESET}" if code else text)
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Cell:
    """A piece of a row that is not broken across lines (unless it alone is too wide).

    `pad` is its column width when the whole row fits on one line padded: the aligned layout
    of a wide terminal. A row that does not fit drops the padding and wraps at cell boundaries.
    """

    segments: tuple[Segment, ...]
    pad: int = 0

    @property
    def width(self) -> int:
        """Terminal cells of its text, unpadded."""
        return sum(display_width(s.text) for s in self.segments)


def _cell(text: str, style: Style = "plain", pad: int = 0) -> Cell:
    return Cell((Segment(text, style),), pad)


def _words(text: str, style: Style = "plain") -> list[Cell]:
    """Prose as cells, one a word, so it wraps between words."""
    return [_cell(word, style) for word in text.split(" ") if word]


def _split_cell(cell: Cell, width: int) -> tuple[Cell, Cell]:
    """The first `width` cells of `cell`'s text, and the rest."""
    head: list[Segment] = []
    rest: list[Segment] = []
    room = width
    for seg in cell.segments:
        if rest or room <= 0:
            rest.append(seg)
            continue
        text, more = _cut(seg.text, room)
        if not text and more:  # a wide character with one cell left: it goes on the next line
            room = 0
            rest.append(seg)
            continue
        head.append(Segment(text, seg.style))
        room -= display_width(text)
        if more:
            rest.append(Segment(more, seg.style))
    if not any(s.text for s in head) and rest:  # narrower than one character: take it anyway
        first, *others = rest
        head = [Segment(first.text[:1], first.style)]
        rest = [Segment(first.text[1:], first.style), *others] if first.text[1:] else others
    return Cell(tuple(head)), Cell(tuple(rest))


def flow(cells: list[Cell], width: int | None, *, indent: int = 4) -> list[Line]:
    """A row laid out for `width` terminal cells: one padded line if it fits, else wrapped.

    Wrapped lines break between cells (joined by one space) and continue `indent` cells in;
    a cell wider than a line is broken inside. Nothing is dropped: every cell is on some line.
    """
    padded: list[Segment] = []
    for i, cell in enumerate(cells):
        padded.extend(cell.segments)
        if i + 1 < len(cells):
            gap = " " * (max(0, cell.pad - cell.width) + 1)
            padded.append(Segment(gap, _gap_style(cell, cells[i + 1])))
    if width is None or sum(display_width(s.text) for s in padded) <= width:
        return [_merged(padded)]
    return [_merged(list(line)) for line in _wrap(cells, width, min(indent, max(0, width // 3)))]


def _gap_style(left: Cell, right: Cell) -> Style:
    # The space between two cells of one style is in that style: a run of "alert" (inverse)
    # text reads as one block, and a row's colour is one run, as on a one-line console.
    if left.segments and right.segments and left.segments[-1].style == right.segments[0].style:
        return left.segments[-1].style
    return "plain"


def _merged(segments: list[Segment]) -> Line:
    """Adjacent segments of one style as one (one colour code and one reset per run)."""
    out: list[Segment] = []
    for seg in segments:
        if not seg.text:
            continue
        if out and out[-1].style == seg.style:
            out[-1] = Segment(out[-1].text + seg.text, seg.style)
        else:
            out.append(seg)
    return tuple(out)


def _wrap(cells: list[Cell], width: int, indent: int) -> list[Line]:
    lines: list[Line] = []
    current: list[Segment] = []
    used, empty = 0, True
    previous = Cell(())
    for each in cells:
        cell = each
        while True:
            sep = 0 if empty else 1
            if used + sep + cell.width <= width:
                if sep:
                    current.append(Segment(" ", _gap_style(previous, cell)))
                current.extend(cell.segments)
                previous = cell
                used, empty = used + sep + cell.width, False
                break
            if not empty:  # start a continuation line, then try again
                lines.append(tuple(current))
                current, used, empty = [Segment(" " * indent)] if indent else [], indent, True
                continue
            head, cell = _split_cell(cell, max(1, width - used))
            current.extend(head.segments)
            lines.append(tuple(current))
            current, used, empty = [Segment(" " * indent)] if indent else [], indent, True
            if not cell.segments:
                break
    if not empty:
        lines.append(tuple(current))
    return lines


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
        known = self.priority in set(Priority)
        return Priority(self.priority).rank if known else -1

    @property
    def acknowledged(self) -> bool:
        """Whether a nurse acknowledged it."""
        return self.state == "acknowledged"


@dataclass(slots=True)
class BedClock:
    """The console's estimate of a bed's clock (the rule is in the module docstring).

    `observe(t, rx)` takes a time the bed sent (`t`, bed clock) and when it arrived (`rx`,
    console clock); `now(rx)` is the bed's clock at console time `rx`, `elapsed(s)` the bed
    seconds in `s` console seconds.
    """

    newest_t: float | None = None
    newest_rx: float = 0.0
    anchor_t: float = 0.0
    anchor_rx: float = 0.0
    rate: float = 1.0

    @property
    def known(self) -> bool:
        """Whether the bed has sent any live time yet (else its clock is the console's)."""
        return self.newest_t is not None

    def observe(self, t: float, rx: float, *, restart: bool = False) -> None:
        """A live message from the bed said `t`; `restart` (its online status) starts afresh.

        Only the newest time moves the clock: a sample measured earlier, or an alarm event the
        bed sends late after a lost link, says nothing about its clock now.
        """
        if restart or self.newest_t is None:
            self.newest_t, self.newest_rx = t, rx
            self.anchor_t, self.anchor_rx = t, rx
            self.rate = 1.0
            return
        if t <= self.newest_t:
            return
        self.newest_t, self.newest_rx = t, rx
        span = rx - self.anchor_rx
        if span >= CLOCK_RATE_SPAN_S:
            rate = (t - self.anchor_t) / span
            self.rate = rate if rate > 0 and abs(rate - 1.0) > CLOCK_RATE_TOLERANCE else 1.0

    def now(self, rx: float) -> float:
        """The bed's clock at console time `rx`."""
        if self.newest_t is None:
            return rx
        return self.newest_t + (rx - self.newest_rx) * self.rate

    def elapsed(self, seconds: float) -> float:
        """Bed-clock seconds in `seconds` of the console's clock."""
        return seconds * self.rate


@dataclass(slots=True)
class Bed:
    """What the console knows about one bed; `key` is `<ward>/<bed>`."""

    ward: str
    bed: str
    first_seen: float
    root: str = TOPIC_ROOT
    status: str | None = None
    # console clock: when this console learnt the status (an offline bed sends no time)
    status_since: float | None = None
    # the status was the broker's retained one: it changed before `status_since`
    status_retained: bool = False
    phase: str | None = None
    audio_paused_until: float | None = None
    vitals: dict[str, Vital] = field(default_factory=dict)
    # console clock, so staleness does not depend on the bed's clock being right (its length
    # is shown in bed seconds, `clock.elapsed`)
    last_vitals_rx: float | None = None
    alarms: list[Alarm] = field(default_factory=list)
    clock: BedClock = field(default_factory=BedClock)

    @property
    def key(self) -> str:
        """`<ward>/<bed>`, as in the alarm events' `bed` field."""
        return f"{self.ward}/{self.bed}"

    @property
    def prefix(self) -> str:
        """The bed's topic prefix, `<root>/<ward>/<bed>` (docs/ARCHITECTURE.md "MQTT")."""
        return bed_prefix(self.ward, self.bed, self.root)

    def audio_paused(self, now: float) -> bool:
        """Whether the bed's audible signal is paused at console time `now` (on its clock)."""
        return self.audio_paused_until is not None and self.clock.now(now) < self.audio_paused_until

    def offline_for(self, now: float) -> float | None:
        """Bed seconds since this console learnt it is offline; None if it is not offline."""
        if self.status != "offline" or self.status_since is None:
            return None
        return self.clock.elapsed(max(0.0, now - self.status_since))

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
        hide_offline_s: float = DEFAULT_HIDE_OFFLINE_S,
        root: str = TOPIC_ROOT,
        login: str | None = None,
    ) -> None:
        self.user = user
        # the broker login: commands go on `…/cmd/<login>` (monitor/authority.py)
        self.login = login
        self.ward = ward
        self.root = root
        self.stale_s = stale_s
        self.broker = broker
        # 0: an offline bed is shown however long it has been offline
        self.hide_offline_s = hide_offline_s
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
        self._events: deque[tuple[float, WireAlarmEvent]] = deque(maxlen=_RECENT_EVENTS)
        self._sent: deque[_Sent] = deque(maxlen=_RECENT_COMMANDS)

    # ------------------------------------------------------------------ inputs

    def set_link(self, *, connected: bool, error: str | None = None) -> None:
        """The broker link went up or down (`error` says why it is down)."""
        self.connected = connected
        if error is not None or connected:
            self.link_error = error

    def handle(self, topic: str, payload: bytes, now: float, *, retained: bool = False) -> None:
        """Digest one message; anything that is not a well-formed ward message is ignored.

        `retained`: the broker replayed it from store (on subscribing), so it may be old and its
        times say nothing about the bed's clock now. An empty payload clears a retained topic:
        an empty `status` retires the bed (it leaves the screen), an empty `alarms/active` or
        `session` forgets the bed's alarms or session.
        """
        where = parse_topic(topic, self.root)
        if where is None or (self.ward and where.ward != self.ward) or where.kind not in _KINDS:
            return
        if not payload:
            self._cleared(where.key, where.kind)
            return
        bed = self._bed(where.ward, where.bed, now)
        live = not retained
        # every payload is read by its one decoder (monitor/wire.py); one that does not decode
        # is counted and changes nothing
        try:
            match where.kind:
                case "status":
                    self._status(bed, decode_status(payload), now, live=live)
                case "session":
                    self._session(bed, decode_session(payload), now, live=live)
                case "vitals":
                    self._vital(bed, decode_sample(payload), now, live=live)
                case "alarms":
                    self._alarm_event(bed, decode_alarm_event(payload), now, live=live)
                case "alarms/active":
                    self._active(bed, payload, now)
                case _:
                    self._result(decode_command_result(payload))
        except (WireError, RecursionError):
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
            self._move(-1 if key in {"up", "k"} else 1, now)
        elif key.isdigit() and key != "0":
            beds = self._ordered_beds(now)
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
            bed = self.beds[key] = Bed(ward, bed_id, first_seen=now, root=self.root)
        return bed

    def _cleared(self, key: str, kind: str) -> None:
        bed = self.beds.get(key)
        if bed is None:
            return
        if kind == "status":
            # the documented way to retire a bed (README "vigil watch"): it is gone, not offline
            del self.beds[key]
        elif kind == "alarms/active":
            bed.alarms = []
        elif kind == "session":
            bed.phase, bed.audio_paused_until = None, None

    def _status(self, bed: Bed, status: WireStatus, now: float, *, live: bool) -> None:
        if live and status.status == "online" and status.t is not None:
            bed.clock.observe(
                status.t, now, restart=True
            )  # its birth: the bed (re)started its clock
        if status.status != bed.status:
            bed.status = status.status
            bed.status_since = now
            bed.status_retained = not live

    def _session(self, bed: Bed, session: WireSession, now: float, *, live: bool) -> None:
        if live:
            bed.clock.observe(session.t, now)
        bed.phase = session.phase.value
        bed.audio_paused_until = session.audio_paused_until

    def _vital(self, bed: Bed, sample: WireSample, now: float, *, live: bool) -> None:
        if live:
            bed.clock.observe(sample.t, now)
        bed.vitals[sample.param.value] = Vital(sample.t, sample.value if sample.valid else None)
        bed.last_vitals_rx = now

    def _alarm_event(self, bed: Bed, event: WireAlarmEvent, now: float, *, live: bool) -> None:
        if live:
            bed.clock.observe(event.t, now)
        self._events.append((now, event.model_copy(update={"bed": bed.key})))
        if event.alarm_id is not None:
            if event.state is AlarmState.ACKNOWLEDGED and event.user is not None:
                _remember(self._ack_user, event.alarm_id, event.user)
            if event.state is AlarmState.ACTIVE:
                self._maybe_ring(bed, event.alarm_id, event.priority, now)

    def _active(self, bed: Bed, payload: bytes, now: float) -> None:
        alarms: list[Alarm] = []
        for item in decode_active_alarms(payload, skip=self._count_malformed):
            alarm = Alarm(
                alarm_id=item.alarm_id,
                code=item.code,
                priority=item.priority.value,
                state=item.state,
                since=item.since,
                param=item.param,
                value=item.value,
                limit=item.limit,
                level=item.level,
                latched=item.latched,
            )
            alarms.append(alarm)
            # A high alarm first learnt from the retained list (the console started after it
            # was raised) is new to this station: it rings too, once.
            if alarm.alarm_id is not None and alarm.state == "active":
                self._maybe_ring(bed, alarm.alarm_id, item.priority, now)
        alarms.sort(key=lambda a: (a.rank, a.since if a.since is not None else math.inf))
        bed.alarms = alarms

    def _count_malformed(self, _reason: str) -> None:
        self.malformed += 1

    def _result(self, result: WireCommandResult) -> None:
        for sent in self._sent:
            if sent.request_id == result.request_id:
                sent.ok = result.ok
                sent.error = result.error
        # the results of other consoles' commands are not ours to show

    def _maybe_ring(self, bed: Bed, alarm_id: str, priority: Priority, now: float) -> None:
        # IEC 60601-1-8: only a high-priority alarm calls for the station's audible signal here
        # (medium and low are seen on screen), once per alarm, and not while a nurse has paused
        # the bed's audio (docs/ALARMS.md: audio pause, 120 s).
        if priority is not Priority.HIGH or alarm_id in self._rung:
            return
        _remember(self._rung, alarm_id, None)
        if not bed.audio_paused(now):  # on the bed's clock, as its session says until when
            self._bells += 1

    # ------------------------------------------------------------------ keys

    def hidden(self, bed: Bed, now: float) -> bool:
        """Whether `bed` has been offline for longer than `hide_offline_s` (and so not shown)."""
        offline = bed.offline_for(now)
        return self.hide_offline_s > 0 and offline is not None and offline > self.hide_offline_s

    def _ordered_beds(self, now: float) -> list[Bed]:
        # fixed order by ward and bed: a bed keeps its place (and its number key) on screen
        return [self.beds[k] for k in sorted(self.beds) if not self.hidden(self.beds[k], now)]

    def _rows(self, now: float) -> list[Selection]:
        rows: list[Selection] = []
        for bed in self._ordered_beds(now):
            rows.append((bed.key, None))
            rows.extend((bed.key, a.alarm_id) for a in bed.alarms if a.alarm_id is not None)
        return rows

    def _current(self, now: float) -> Selection | None:
        """The selection if it still exists; a cleared alarm's selection falls back to its bed."""
        if self.selection is None:
            return None
        key, alarm_id = self.selection
        if key not in self.beds or self.hidden(self.beds[key], now):
            return None
        if alarm_id is not None and not any(a.alarm_id == alarm_id for a in self.beds[key].alarms):
            return (key, None)
        return self.selection

    def _move(self, step: int, now: float) -> None:
        rows = self._rows(now)
        if not rows:
            return
        current = self._current(now)
        if current is None:
            self.selection = rows[0] if step > 0 else rows[-1]
            return
        index = rows.index(current) + step
        self.selection = rows[max(0, min(len(rows) - 1, index))]

    def _target_alarm(self, now: float) -> tuple[Bed, Alarm] | str:
        """The alarm `a` acknowledges, or why there is none."""
        current = self._current(now)
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
            for b in self._ordered_beds(now)
            for a in b.unacknowledged()
        ]
        if not candidates:
            return "no unacknowledged alarm on the ward"
        _, _, _, bed, alarm = min(candidates, key=lambda c: c[:3])
        return bed, alarm

    def _ack(self, now: float) -> list[Outgoing]:
        target = self._target_alarm(now)
        if isinstance(target, str):
            self.notice = target
            return []
        bed, alarm = target
        if alarm.alarm_id is None:
            self.notice = f"{alarm.code} on {bed.key} has no alarm_id: acknowledge it at the bed"
            return []
        ack = functools.partial(Ack, cmd="ack", alarm_id=alarm.alarm_id)
        return self._command(bed, ack, f"ack {alarm.code} on {bed.key}", now)

    def _audio_pause(self, now: float) -> list[Outgoing]:
        current = self._current(now)
        if current is not None:
            bed = self.beds[current[0]]
        else:
            target = self._target_alarm(now)
            if not isinstance(target, str):
                bed = target[0]
            elif len(shown := self._ordered_beds(now)) == 1:
                (bed,) = shown
            else:
                self.notice = "select a bed (up/down or 1-9) to pause its audio"
                return []
        pause = functools.partial(AudioPause, cmd="audio_pause")
        return self._command(bed, pause, f"audio pause on {bed.key}", now)

    def _command(
        self, bed: Bed, make_command: Callable[..., Command], label: str, now: float
    ) -> list[Outgoing]:
        # A command that cannot reach the bed is refused here, and said so, rather than queued:
        # a late acknowledgement is worse than none the nurse knows about (docs/DESIGN.md P11).
        if not self.connected:
            self.notice = f"{label}: not sent, the console is not connected to the broker"
            return []
        if bed.status == "offline":
            self.notice = f"{label}: not sent, {bed.key} is OFFLINE"
            return []
        request_id = uuid.uuid4().hex
        command = make_command(request_id=request_id, user=self.user)
        self._sent.append(_Sent(request_id, label, now))
        topic = command_topic(bed.prefix, self.login)
        return [Outgoing(topic, encode_command(command), request_id)]

    def send_failed(self, request_id: str, error: str) -> None:
        """The I/O loop could not publish a command: show it as not sent."""
        for sent in self._sent:
            if sent.request_id == request_id:
                sent.ok, sent.error = False, f"not sent: {error}"

    # ------------------------------------------------------------------ screen

    def bed_condition(self, bed: Bed, now: float) -> tuple[str, Style]:
        """How the bed's liveness is shown: only a live, fed bed reads `online` (plain)."""
        if bed.status == "offline":
            since = ""
            if bed.status_since is not None:
                when = iso_local(bed.clock.now(bed.status_since), date=False)
                if bed.status_retained:  # stored by the broker: it went offline before then
                    since = f" since before {when}"
                else:
                    since = f" since {when} ({_duration(bed.offline_for(now) or 0.0)})"
            return f"OFFLINE{since}", "alert"
        if bed.status is None:
            return "NO STATUS", "alert"
        last = bed.last_vitals_rx if bed.last_vitals_rx is not None else bed.first_seen
        quiet = bed.clock.elapsed(now - last)
        if quiet > self.stale_s:
            what = "no vitals" if bed.last_vitals_rx is None else "no vitals for"
            age = f" {quiet:.0f} s" if bed.last_vitals_rx is not None else ""
            return f"STALE: {what}{age}", "alert"
        return "online", "plain"

    def render(
        self, now: float, *, height: int | None = None, width: int | None = None
    ) -> list[Line]:
        """The screen at `now`: header, one block per bed, recent events, commands, keys.

        Laid out for `width` terminal cells (None: unbounded, one line a row) and cut to
        `height` lines, saying how many rows it hid.
        """
        head = self._head(now, width)
        blocks = self._body(now, width)
        foot = self._foot(now, width)
        body = [line for block in blocks for line in block]
        if height is not None and len(head) + len(body) + len(foot) > height:
            # whole rows only: a bed is never shown with half of its vitals
            room = max(0, height - len(head) - len(foot) - 1)
            body, hidden_rows = [], len(blocks)
            for i, block in enumerate(blocks):
                if len(body) + len(block) > room:
                    hidden_rows = len(blocks) - i
                    break
                body += block
            body.append((Segment(f"... {hidden_rows} more rows: enlarge the window", "alert"),))
        return head + body + foot

    def _head(self, now: float, width: int | None) -> list[Line]:
        ward = self.ward or "all wards"
        head: list[Line] = [
            *flow(
                [
                    _cell("VIGIL WATCH", "bold"),
                    _cell(f" {ward}"),
                    _cell(f" broker {self.broker}"),
                    _cell(f" user {self.user}"),
                    _cell(f" console {iso_local(now)}"),
                ],
                width,
            ),
            *flow(
                _words(
                    "Decision support, not a certified medical device: the bedside monitors' "
                    "own alarms remain primary.",
                    "dim",
                ),
                width,
            ),
        ]
        if not self.connected:
            why = f" ({self.link_error})" if self.link_error else ""
            head += flow(
                _words(f"NOT CONNECTED TO THE WARD BROKER{why}: NOTHING BELOW IS LIVE", "alert"),
                width,
            )
        head.append(())
        return head

    def _body(self, now: float, width: int | None) -> list[list[Line]]:
        """The beds and their alarms: one block of lines a row (a row may wrap)."""
        body: list[list[Line]] = []
        current = self._current(now)
        shown = self._ordered_beds(now)
        for number, bed in enumerate(shown, start=1):
            selected = current == (bed.key, None)
            body.append(flow(self._bed_cells(number, bed, now, selected=selected), width, indent=5))
            for alarm in bed.alarms:
                selected = current is not None and current == (bed.key, alarm.alarm_id)
                row = flow(self._alarm_cells(alarm, bed, now, selected=selected), width, indent=9)
                if selected and alarm.alarm_id is not None:
                    row += self._alarm_detail(bed, alarm.alarm_id, width)
                body.append(row)
        hidden = [b.key for b in self._ordered_all() if self.hidden(b, now)]
        if hidden:
            body.append(
                flow(
                    _words(
                        f"{len(hidden)} bed(s) offline for more than {self.hide_offline_s:g} s not "
                        f"shown: {', '.join(hidden)}",
                        "dim",
                    ),
                    width,
                )
            )
        if not self.beds:
            body.append(
                flow(
                    _words(f"no bed seen yet under {self.root}/{self.ward or '+'}/+", "dim"), width
                )
            )
        return body

    def _foot(self, now: float, width: int | None) -> list[Line]:
        foot: list[Line] = [(), (Segment("Recent alarm events", "bold"),)]
        for t, e in reversed(self._events):
            foot += flow(self._event_cells(t, e), width, indent=11)
        if not self._events:
            foot.append((Segment("  none yet", "dim"),))
        foot += [(), (Segment("Commands", "bold"),)]
        for sent in reversed(self._sent):
            foot += flow(self._sent_cells(sent, now), width, indent=11)
        if not self._sent:
            foot.append((Segment("  none yet", "dim"),))
        if self.notice:
            foot += flow([_cell(" "), *_words(self.notice, "alert")], width)
        keys = (
            "keys:",
            "up/down select",
            "1-9 bed",
            "Esc no selection",
            "a acknowledge (selected, else highest unacknowledged)",
            "p pause audio",
            "q quit",
        )
        # two spaces between keys when the line fits (pad one more than the text)
        foot += flow([_cell(k, "dim", pad=len(k) + 1) for k in keys], width)
        return foot

    def _ordered_all(self) -> list[Bed]:
        return [self.beds[k] for k in sorted(self.beds)]

    def _bed_cells(self, number: int, bed: Bed, now: float, *, selected: bool) -> list[Cell]:
        condition, style = self.bed_condition(bed, now)
        cells = [
            _cell(f"{'>' if selected else ' '}[{number}]", "bold" if selected else "plain"),
            _cell(bed.key, "bold", pad=13),
            _cell(bed.phase or "?", pad=8),
            _cell(condition, style, pad=27),
        ]
        bed_now = bed.clock.now(now)
        for param in _ALWAYS:
            cells.append(self._vital_cell(bed, param, bed_now))
        cells.append(self._pressure_cell(bed, _NIBP, "NIBP", bed_now))
        if any(p in bed.vitals for p in _ABP):
            cells.append(self._pressure_cell(bed, _ABP, "ABP", bed_now))
        for param in _OPTIONAL:
            if param in bed.vitals:
                cells.append(self._vital_cell(bed, param, bed_now))
        if bed.audio_paused(now) and bed.audio_paused_until is not None:
            left = bed.audio_paused_until - bed_now
            until = iso_local(bed.audio_paused_until, date=False)
            cells += [
                _cell(f"audio paused until {until}", "medium"),
                _cell(f"({left:.0f}s left)", "medium"),
            ]
        if bed.clock.known and (abs(bed_now - now) > CLOCK_SHOWN_S or bed.clock.rate != 1.0):
            rate = f", {bed.clock.rate:.3g}x" if bed.clock.rate != 1.0 else ""
            cells.append(_cell(f"bed clock {iso_local(bed_now, date=False)}{rate}", "dim"))
        return cells

    def _vital_cell(self, bed: Bed, param: str, bed_now: float) -> Cell:
        label = _LABEL.get(param, param)
        vital = bed.vitals.get(param)
        if vital is None:
            return Cell((Segment(f"{label} --"),), pad=len(label) + 9)
        value = "--" if vital.value is None else f"{vital.value:g}{_UNIT.get(param, '')}"
        age = max(0.0, bed_now - vital.t)
        style: Style = "alert" if param in _CONTINUOUS and age > self.stale_s else "plain"
        return Cell(
            (Segment(f"{label} "), Segment(value, "bold"), Segment(f" ({age:.0f}s)", style)),
            pad=len(label) + 9,
        )

    def _pressure_cell(self, bed: Bed, params: tuple[str, ...], label: str, bed_now: float) -> Cell:
        sys_, dia, mean = (bed.vitals.get(p) for p in params)
        if sys_ is None and dia is None:
            return Cell((Segment(f"{label} --/--"),), pad=len(label) + 17)

        def v(x: Vital | None) -> str:
            return "--" if x is None or x.value is None else f"{x.value:g}"

        text = f"{v(sys_)}/{v(dia)}" + (f" ({v(mean)})" if mean is not None else "")
        newest = max(x.t for x in (sys_, dia) if x is not None)
        age = max(0.0, bed_now - newest)
        style: Style = "alert" if label == "ABP" and age > self.stale_s else "plain"
        return Cell(
            (Segment(f"{label} "), Segment(text, "bold"), Segment(f" ({age:.0f}s)", style)),
            pad=len(label) + 17,
        )

    def _alarm_cells(self, alarm: Alarm, bed: Bed, now: float, *, selected: bool) -> list[Cell]:
        style = _PRIORITY_STYLE.get(alarm.priority, "alert")
        state = alarm.state.upper()
        if alarm.acknowledged:
            user = self._ack_user.get(alarm.alarm_id or "")
            state += f" by {user}" if user else ""
        elif alarm.level:
            state += f" (escalated, level {alarm.level})"
        cells = [
            _cell(f"    {'>' if selected else ' '}", "bold"),
            _cell(f"{_MARK.get(alarm.priority, '???')} {alarm.priority.upper()}", style, pad=10),
            _cell(alarm.code, style, pad=22),
            _cell(state, style, pad=34),
        ]
        if alarm.param:
            value = f"{alarm.value:g}" if alarm.value is not None else "?"
            limit = f" (limit {alarm.limit:g})" if alarm.limit is not None else ""
            cells.append(_cell(f"{alarm.param} {value}{limit}", pad=26))
        if alarm.since is not None:
            age = max(0.0, bed.clock.now(now) - alarm.since)
            cells.append(_cell(f"since {iso_local(alarm.since, date=False)} ({age:.0f}s)"))
        if alarm.latched:
            cells.append(_cell(" latched"))
        return cells

    def _alarm_detail(self, bed: Bed, alarm_id: str, width: int | None) -> list[Line]:
        """Under the selected alarm: its id, and how to acknowledge it from a shell."""
        lines = flow([_cell("         alarm_id"), _cell(alarm_id, "bold")], width, indent=9)
        broker = f" --broker {self.broker}" if self.broker else ""
        shell = f"vigil cmd{broker} --bed {bed.prefix} ack alarm_id={alarm_id}"
        lines += flow(
            [_cell("         from a shell:", "dim"), *_words(shell, "dim")], width, indent=9
        )
        return lines

    def _event_cells(self, received: float, e: WireAlarmEvent) -> list[Cell]:
        del received  # an event always carries its own time, on the bed's clock
        priority = e.priority.value
        style = _PRIORITY_STYLE.get(priority, "alert")
        state = e.state.value.upper()
        if e.level:
            state += f" (level {e.level})"
        if e.user:
            state += f" by {e.user}"
        return [
            _cell(f"  {iso_local(e.t, date=False)}"),
            _cell(e.bed or "?", style, pad=14),
            _cell(priority.upper(), style, pad=6),
            _cell(e.code, style),
            *_words(state, style),
        ]

    def _sent_cells(self, sent: _Sent, now: float) -> list[Cell]:
        # the console's own clock: it sent the command and waits for the answer itself
        when = [
            _cell(f"  {iso_local(sent.sent_at, date=False)}"),
            *_words(f"{sent.label} by {self.user}:"),
        ]
        if sent.ok is True:
            return [*when, _cell("accepted", "bold")]
        if sent.ok is False:
            return [*when, *_words(f"REFUSED: {sent.error or 'no reason given'}", "alert")]
        if now - sent.sent_at > COMMAND_ANSWER_S:
            return [*when, _cell(f"NO ANSWER after {COMMAND_ANSWER_S:g} s", "alert")]
        return [*when, _cell("sent, waiting for the bed", "dim")]


def _duration(seconds: float) -> str:
    """A length of time for a person: `42 s`, `12 min`, `3 h 05 min`."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min"
    return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:02.0f} min"


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
