"""One recording replayed through the real engine and cut into sessions.

A recording may hold one session or many, back to back: a session opens at its
`session_start` row and ends at its `discharge` row (or at the next `session_start`, or the
recording's last row, whichever comes first; docs/ALARMS.md Reading 14). The whole file goes through
one `AlarmEngine.rows` batch, exactly as `vigil replay` would send it, and each alarm activation
is then given to the session it happened in:
- an activation (`active` event) in a session phase belongs to the latest session started at or
  before it; one raised in phase `none` (between sessions) is counted as outside any session;
- it lasts until its `cleared` event, or to the end of its session if it has none there (replay
  has no nurse to acknowledge, so a latched alarm lasts until the discharge clears it).

True events (annotations) come from `NAME.events.csv` beside `NAME.csv` (header `t,code`, one
row per event, `t` epoch seconds) and are given to the session whose span holds them.
"""

from __future__ import annotations

import bisect
import csv
import math
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from alarms import recording_io
from alarms.engine import AlarmEngine, Rows
from alarms.policy import Policy
from alarms.recording_io import RecordingError
from kernel.vocabulary import (
    SYSTEM_ALARM_CODES,
    AlarmEvent,
    AlarmState,
    Phase,
    Priority,
    SessionEvent,
)

__all__ = [
    "Activation",
    "FileResult",
    "SessionResult",
    "TrueEvent",
    "evaluate_file",
    "events_path",
    "read_batches",
    "read_events",
    "read_rows",
    "recordings_under",
]

_STEP_CODE: Final[dict[int, SessionEvent]] = {
    int(Rows.of([(0.0, e, math.nan, True)]).what[0]): e for e in SessionEvent
}


@dataclass(frozen=True, slots=True)
class Activation:
    """One alarm activation: from its `active` event at `t` to `end`.

    `end` is its clearing, or the end of its session (`cleared` says which).
    """

    code: str
    priority: Priority
    phase: Phase
    t: float
    end: float
    cleared: bool
    param: str | None = None  # the reading that crossed (`NIBP_SYS` or `NIBP_DIA`, `SPO2`, ...)


@dataclass(frozen=True, slots=True)
class TrueEvent:
    """An annotated true event: what alarm `code` should have caught, starting at `t`."""

    t: float
    code: str


@dataclass(frozen=True, slots=True)
class SessionResult:
    """One session: its span, phase boundaries, activations and annotated true events."""

    file: str
    index: int  # 0-based, within its file
    start: float
    infusion_start: float | None
    infusion_stop: float | None
    end: float
    discharged: bool
    activations: tuple[Activation, ...]
    true_events: tuple[TrueEvent, ...] = ()

    def phase_spans(self) -> dict[Phase, tuple[float, float]]:
        """The span of each phase the session went through: [from, to)."""
        inf = self.infusion_start if self.infusion_start is not None else self.end
        stop = self.infusion_stop if self.infusion_stop is not None else self.end
        inf, stop = min(inf, self.end), min(max(stop, inf), self.end)
        spans = {
            Phase.PRE: (self.start, inf),
            Phase.INFUSION: (inf, stop),
            Phase.POST: (stop, self.end),
        }
        return {p: s for p, s in spans.items() if s[1] > s[0]}


@dataclass(frozen=True, slots=True)
class FileResult:
    """The sessions of one recording, or why it could not be read (`error`)."""

    file: str
    sessions: tuple[SessionResult, ...] = ()
    outside: int = 0  # activations raised outside any session
    rows: int = 0
    error: str | None = None


def read_rows(path: Path) -> Rows:
    """The whole recording at `path` (CSV or Parquet) as one batch of rows.

    Raises:
        RecordingError: a bad line, with file and line.
        OSError: the file cannot be read.
    """
    return recording_io.read_all(path)


def read_batches(path: Path) -> Iterator[Rows]:
    """The recording at `path` in batches, in order, streamed in blocks (memory bounded).

    Raises:
        RecordingError: a bad line, with file and line (possibly after earlier batches).
        OSError: the file cannot be read.
    """
    yield from recording_io.read_recording(path)


def events_path(recording: Path) -> Path:
    """`NAME.events.csv` beside the recording `NAME.csv` (or `NAME.parquet`)."""
    stem = recording.name.removesuffix(".csv").removesuffix(".parquet")
    return recording.with_name(stem + ".events.csv")


def read_events(path: Path, codes: Collection[str] | None = None) -> list[TrueEvent]:
    """The annotations in `path` (`t,code`); none when the file does not exist.

    With `codes`, an event naming another alarm code is refused (a typo would otherwise never
    be detected, silently).

    Raises:
        RecordingError: a bad line, with file and line.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordingError(str(path), 1, f"cannot read the annotations: {exc}") from None
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if header is None or [h.strip() for h in header] != ["t", "code"]:
        raise RecordingError(str(path), 1, "bad header: expected t,code")
    out: list[TrueEvent] = []
    for fields in reader:
        if not fields:
            continue
        line = reader.line_num
        if len(fields) != 2:
            raise RecordingError(str(path), line, f"expected 2 fields, got {len(fields)}")
        try:
            t = float(fields[0])
        except ValueError:
            raise RecordingError(str(path), line, f"time {fields[0]!r} is not a number") from None
        code = fields[1].strip()
        if not math.isfinite(t) or not code:
            raise RecordingError(str(path), line, "expected a finite time and an alarm code")
        if codes is not None and code not in codes:
            raise RecordingError(str(path), line, f"{code!r} is not an alarm code of the policy")
        out.append(TrueEvent(t, code))
    return out


def recordings_under(paths: list[Path]) -> list[Path]:
    """The recordings named by `paths`: files as given, folders searched (sorted, recursive).

    In a folder, `*.csv` and `*.parquet` files are recordings, except `*.events.csv`
    (annotations). A file is listed once, at its first mention.
    """
    out: list[Path] = []
    seen: set[Path] = set()
    for path in paths:
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and p.suffix in {".csv", ".parquet"}
                and not p.name.endswith(".events.csv")
            )
        else:
            found = [path]
        for p in found:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                out.append(p)
    return out


@dataclass
class _Open:
    session: int
    code: str
    priority: Priority
    phase: Phase
    t: float
    param: str | None


def evaluate_file(path: Path, policy: Policy) -> FileResult:
    """Replay one recording with `policy` and cut it into sessions (see the module docstring).

    A recording that cannot be read gives a `FileResult` with `error` set (file and line), not
    an exception: the result crosses process boundaries whole.
    """
    name = str(path)
    try:
        truth = read_events(events_path(path), {*policy.codes(), *SYSTEM_ALARM_CODES})
        events, steps, rows, last_t = _replay(path, policy)
    except RecordingError as exc:
        return FileResult(name, error=str(exc))
    except OSError as exc:
        return FileResult(name, error=f"{name}: {exc.strerror or exc}")
    spans = _spans(steps, last_t)
    starts = [s[0] for s in spans]
    open_: dict[str, _Open] = {}
    done: list[list[Activation]] = [[] for _ in spans]
    outside = 0
    for ev in events:
        if ev.state is AlarmState.ACTIVE:
            if ev.phase is Phase.NONE or not spans:
                outside += 1
                continue
            k = max(0, bisect.bisect_right(starts, ev.t) - 1)
            open_[ev.code] = _Open(k, ev.code, ev.priority, ev.phase, ev.t, ev.param)
        elif ev.state is AlarmState.CLEARED and ev.code in open_:
            o = open_.pop(ev.code)
            end = min(ev.t, spans[o.session][3])
            done[o.session].append(
                Activation(o.code, o.priority, o.phase, o.t, end, cleared=True, param=o.param)
            )
    for o in open_.values():
        end = spans[o.session][3]
        done[o.session].append(
            Activation(o.code, o.priority, o.phase, o.t, end, cleared=False, param=o.param)
        )
    sessions = []
    for k, (start, inf, stop, end, discharged) in enumerate(spans):
        acts = tuple(sorted(done[k], key=lambda a: (a.t, a.code)))
        mine = tuple(e for e in truth if start <= e.t <= end)
        sessions.append(SessionResult(name, k, start, inf, stop, end, discharged, acts, mine))
    return FileResult(name, tuple(sessions), outside, rows)


def _replay(
    path: Path, policy: Policy
) -> tuple[list[AlarmEvent], list[tuple[float, SessionEvent]], int, float]:
    """The events, the session steps, the number of rows and the last time of a recording."""
    engine = AlarmEngine(policy)
    events: list[AlarmEvent] = []
    steps: list[tuple[float, SessionEvent]] = []
    rows, last_t = 0, -math.inf
    for batch in read_batches(path):
        events += engine.rows(batch)
        steps += _steps(batch)
        rows += len(batch)
        if len(batch):
            last_t = max(last_t, float(np.max(batch.t)))
    events += engine.flush()
    return events, steps, rows, last_t


def _steps(batch: Rows) -> list[tuple[float, SessionEvent]]:
    """The session steps of a batch, in order."""
    idx = np.flatnonzero(np.isin(batch.what, list(_STEP_CODE)))
    return [(float(batch.t[k]), _STEP_CODE[int(batch.what[k])]) for k in idx]


def _spans(
    steps: list[tuple[float, SessionEvent]], last_t: float
) -> list[tuple[float, float | None, float | None, float, bool]]:
    """(start, infusion start, infusion stop, end, discharged) of each session, in order."""
    out: list[tuple[float, float | None, float | None, float, bool]] = []
    start: float | None = None
    inf: float | None = None
    stop: float | None = None
    for t, step in steps:
        if step is SessionEvent.SESSION_START:
            if start is not None:
                out.append((start, inf, stop, t, False))
            start, inf, stop = t, None, None
        elif start is None:
            continue
        elif step is SessionEvent.DISCHARGE:
            out.append((start, inf, stop, t, True))
            start = None
        elif step is SessionEvent.INFUSION_START and inf is None:
            inf = t
        elif step is SessionEvent.INFUSION_STOP and inf is not None and stop is None:
            stop = t
    if start is not None:
        out.append((start, inf, stop, last_t, False))
    return out
