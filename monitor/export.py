"""`vigil export SESSION --csv`: a session from the journal as a recording CSV.

The recording is what the bed's alarm core saw: every sample the session's journal holds, in
time order, and the session steps at the times the nurse's commands made them (docs/ARCHITECTURE.md
"Recording CSV"). `vigil replay` of the file gives the session's physiological and protocol
alarms; acknowledgements, system alarms (a monitor unplugged, the broker away) and the timing
of live ticks are not in a recording, so events that depend on them can differ.

The journal is the bed config's ``[journal] path`` (``--config``, default /etc/vigil/bed.toml)
or ``--journal PATH``. Exit status: 0 written, 1 unknown session (the known ones are listed as
`vigil sessions` lists them), 2 usage error.

`vigil sessions` (`sessions_main`) lists the journal's sessions (`monitor.sessions`): exit 0
listed (also when there are none), 2 no journal or an invalid config.
"""

from __future__ import annotations

import contextlib
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final

from alarms.recording_io import write_recording
from kernel.configfile import ConfigError
from kernel.vocabulary import Sample, ScenarioItem, SessionEvent, Step
from monitor.inputs import SamplesInput, decode
from monitor.journal import Journal, SessionRecord
from monitor.sessions import UnknownSessionError, find_session, session_table
from monitor.settings import load_settings

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator

__all__ = ["export_main", "open_journal", "session_items", "sessions_main"]

DEFAULT_CONFIG: Final = Path("/etc/vigil/bed.toml")
_STEPS: Final = (
    ("opened_t", SessionEvent.SESSION_START),
    ("infusion_start_t", SessionEvent.INFUSION_START),
    ("infusion_stop_t", SessionEvent.INFUSION_STOP),
    ("discharge_t", SessionEvent.DISCHARGE),
)


class UsageError(Exception):
    """The arguments do not name a readable journal."""


@contextlib.contextmanager
def open_journal(args: argparse.Namespace) -> Iterator[Journal]:
    """The journal named by ``--journal`` or by the ``--config`` bed config, open read-only.

    Closed when the `with` block ends.

    Raises:
        UsageError: no such journal file, or the config is invalid (before the block runs).
    """
    path: Path | None = args.journal
    if path is None:
        try:
            path = load_settings(args.config or DEFAULT_CONFIG).journal.path
        except ConfigError as exc:
            raise UsageError(str(exc)) from exc
    if not path.is_file():
        raise UsageError(f"no journal at {path}")
    journal = Journal(path.resolve(), readonly=True)
    try:
        yield journal
    finally:
        journal.close()


def session_items(journal: Journal, record: SessionRecord) -> list[ScenarioItem]:
    """The session's samples and steps, in time order (a step first at a shared instant)."""
    items: list[tuple[float, int, int, ScenarioItem]] = []
    for name, event in _STEPS:
        t = record.info.get(name)
        if t is not None:
            items.append((float(t), 0, len(items), Step(float(t), event)))
    for item in journal.inputs(after=record.first_input - 1, until=record.last_input):
        batch = decode(item)
        if not isinstance(batch, SamplesInput):
            continue
        for sample in batch.samples:
            items.append((sample.t, 1, len(items), _recorded(sample)))
    items.sort(key=lambda x: (x[0], x[1], x[2]))
    return [item for *_, item in items]


def _recorded(sample: Sample) -> Sample:
    """Invalid per device: written without a value (the recording's "invalid")."""
    if sample.valid:
        return sample
    return Sample(sample.t, sample.param, math.nan, valid=False, device_id=sample.device_id)


def export_main(args: argparse.Namespace) -> int:
    """`vigil export`: write the session's recording to `args.out` or stdout."""
    try:
        with open_journal(args) as journal:
            try:
                record = find_session(journal, args.session)
            except UnknownSessionError as exc:
                print(f"vigil export: {exc}", file=sys.stderr)
                return 1
            items = session_items(journal, record)
    except UsageError as exc:
        print(f"vigil export: {exc}", file=sys.stderr)
        return 2
    rows = write_recording(items, args.out if args.out is not None else sys.stdout)
    print(
        f"vigil export: session {record.session_id} (patient {record.patient_id}): {rows} rows",
        file=sys.stderr,
    )
    return 0


def sessions_main(args: argparse.Namespace) -> int:
    """`vigil sessions [--config FILE | --journal PATH]`: list the journal's sessions."""
    try:
        with open_journal(args) as journal:
            records = journal.sessions()
    except UsageError as exc:
        print(f"vigil sessions: {exc}", file=sys.stderr)
        return 2
    print(session_table(records) if records else "no sessions in the journal")
    return 0
