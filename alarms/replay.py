"""`vigil replay`: a recording CSV in, alarm events out, through the live daemon's engine.

The recording format is docs/ARCHITECTURE.md "Recording CSV": header `t,param,value`; `param` is a
parameter of the vocabulary or `EVENT` (then `value` is a session step); an empty value or `nan`
is an invalid sample; rows are in time order.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from alarms.engine import AlarmEngine, Rows
from alarms.policy import Policy, load_policy
from monitor.configfile import ConfigError
from monitor.vocabulary import AlarmEvent, Param, SessionEvent

__all__ = ["RecordingError", "Row", "read_recording", "replay", "replay_main", "replay_per_row"]

HEADER = ("t", "param", "value")


class RecordingError(ValueError):
    """A recording that cannot be replayed; `line` is 1-based, as editors count."""

    def __init__(self, file: str, line: int, reason: str) -> None:
        self.file, self.line, self.reason = file, line, reason
        super().__init__(f"{file}:{line}: {reason}")


@dataclass(frozen=True, slots=True)
class Row:
    """One row of a recording."""

    t: float
    what: Param | SessionEvent
    value: float  # NaN for an invalid sample or an event


def read_recording(lines: Iterable[str], *, file: str = "<recording>") -> Iterator[Row]:
    """Parse a recording, row by row.

    Raises:
        RecordingError: at the first bad line (bad header, unknown parameter or event, time that
            is not a finite number or goes backwards, value that is not a number).
    """
    reader = csv.reader(lines)
    try:
        header = next(reader)
    except StopIteration:
        raise RecordingError(file, 1, "empty file: expected header t,param,value") from None
    if tuple(h.strip() for h in header) != HEADER:
        raise RecordingError(file, 1, f"bad header {','.join(header)!r}: expected t,param,value")
    last_t = -math.inf
    for fields in reader:
        if not fields or fields == [""]:
            continue
        row = _parse_row(fields, file, reader.line_num)
        if row.t < last_t:
            raise RecordingError(
                file, reader.line_num, f"time {row.t!r} is earlier than the row before it"
            )
        last_t = row.t
        yield row


def _parse_row(fields: list[str], file: str, line: int) -> Row:
    if len(fields) != len(HEADER):
        raise RecordingError(file, line, f"expected 3 fields, got {len(fields)}")
    t_text, param_text, value_text = (f.strip() for f in fields)
    try:
        t = float(t_text)
    except ValueError:
        raise RecordingError(file, line, f"time {t_text!r} is not a number") from None
    if not math.isfinite(t):
        raise RecordingError(file, line, f"time {t_text!r} is not finite")
    if param_text == "EVENT":
        try:
            return Row(t, SessionEvent(value_text), math.nan)
        except ValueError:
            known = ", ".join(e.value for e in SessionEvent)
            raise RecordingError(
                file, line, f"unknown event {value_text!r} (known: {known})"
            ) from None
    try:
        param = Param(param_text)
    except ValueError:
        raise RecordingError(file, line, f"unknown parameter {param_text!r}") from None
    if value_text == "" or value_text.lower() == "nan":
        return Row(t, param, math.nan)
    try:
        value = float(value_text)
    except ValueError:
        raise RecordingError(file, line, f"value {value_text!r} is not a number") from None
    if math.isinf(value):
        raise RecordingError(file, line, f"value {value_text!r} is not finite")
    return Row(t, param, value)


def replay(rows: Iterable[Row], policy: Policy) -> Iterator[AlarmEvent]:
    """The alarm events of a recording, in order (docs/ALARMS.md "Precise reading" 1).

    The rows go to `AlarmEngine.rows` in one batch: the same entry point the live daemon uses.
    """
    engine = AlarmEngine(policy)
    batch = Rows.of((r.t, r.what, r.value, not math.isnan(r.value)) for r in rows)
    yield from engine.rows(batch)
    yield from engine.flush()


def replay_per_row(rows: Iterable[Row], policy: Policy) -> Iterator[AlarmEvent]:
    """The same events, one `AlarmEngine.row` call per row: the plain per-sample reference."""
    engine = AlarmEngine(policy)
    for row in rows:
        yield from engine.row(row.t, row.what, row.value, valid=not math.isnan(row.value))
    yield from engine.flush()


def _write_events(events: Iterable[AlarmEvent], out: TextIO) -> Counter[str]:
    counts: Counter[str] = Counter()
    for event in events:
        counts[f"{event.code} {event.state}"] += 1
        out.write(json.dumps(event.to_json()) + "\n")
    return counts


def replay_main(args: argparse.Namespace) -> int:
    """`vigil replay FILE.csv [--config POLICY] [--summary]`."""
    try:
        policy = load_policy(args.config)
    except ConfigError as exc:
        print(f"vigil replay: bad policy:\n{exc}", file=sys.stderr)
        return 1
    path: Path = args.file
    try:
        # Read it all first: a bad line is refused before any event is printed.
        with path.open(encoding="utf-8", newline="") as f:
            rows = list(read_recording(f, file=str(path)))
    except RecordingError as exc:
        print(f"vigil replay: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"vigil replay: {path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    counts = _write_events(replay(rows, policy), sys.stdout)
    if args.summary:
        for key, n in sorted(counts.items()):
            print(f"{n:6d}  {key}", file=sys.stderr)
        print(f"{sum(counts.values()):6d}  events", file=sys.stderr)
    return 0
