"""`vigil replay`: a recording in, alarm events out, through the live daemon's engine.

The recording format is docs/ARCHITECTURE.md "Recording CSV" (or Parquet with the same
columns), read by `alarms.recording_io` in blocks straight into the engine's batches.
"""

from __future__ import annotations

import argparse
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
from alarms.recording_io import RecordingError, read_recording
from kernel.configfile import ConfigError
from kernel.vocabulary import AlarmEvent, Param, SessionEvent

__all__ = [
    "RecordingError",
    "Row",
    "replay",
    "replay_batches",
    "replay_file",
    "replay_main",
    "replay_per_row",
]


@dataclass(frozen=True, slots=True)
class Row:
    """One row of a recording, for recordings built in code (tests, scenarios)."""

    t: float
    what: Param | SessionEvent
    value: float  # NaN for an invalid sample or an event


def replay(rows: Iterable[Row], policy: Policy) -> Iterator[AlarmEvent]:
    """The alarm events of a recording, in order (docs/ALARMS.md "Precise reading" 1).

    The rows go to `AlarmEngine.rows` in one batch: the same entry point the live daemon uses.
    """
    engine = AlarmEngine(policy)
    batch = Rows.of((r.t, r.what, r.value, not math.isnan(r.value)) for r in rows)
    yield from engine.rows(batch)
    yield from engine.flush()


def replay_batches(batches: Iterable[Rows], policy: Policy) -> Iterator[AlarmEvent]:
    """The alarm events of a recording read in batches (`alarms.recording_io`), in order."""
    engine = AlarmEngine(policy)
    for batch in batches:
        yield from engine.rows(batch)
    yield from engine.flush()


def replay_file(path: Path, policy: Policy) -> list[AlarmEvent]:
    """The alarm events of the recording at `path` (CSV or Parquet), streamed in blocks.

    Raises:
        RecordingError: at the first bad line (or Parquet row), before any event is returned.
        OSError: the file cannot be read.
    """
    return list(replay_batches(read_recording(path), policy))


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
        # Every event is kept until the last row is read: a bad line is refused before any
        # event is printed (the events are few; the rows stream through in blocks).
        events = replay_file(path, policy)
    except RecordingError as exc:
        print(f"vigil replay: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"vigil replay: {path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    counts = _write_events(events, sys.stdout)
    if args.summary:
        for key, n in sorted(counts.items()):
            print(f"{n:6d}  {key}", file=sys.stderr)
        print(f"{sum(counts.values()):6d}  events", file=sys.stderr)
    return 0
