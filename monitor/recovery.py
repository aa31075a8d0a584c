"""Resuming a bed after a crash: the journal's inputs replayed into a fresh core.

See `monitor.journal` for why replaying inputs is exact. `resume` applies every input after
the journal's idle mark to `core` exactly as the live bed loop applied it: the same function
(`monitor.inputs.apply`), the same time, the same order. The events it regenerates were, as a
rule, made durable the first time; those a crash caught before their durable write are handed
back to be stored now.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel.vocabulary import AlarmEvent
from monitor.inputs import apply, decode
from monitor.journal import Input, Journal

if TYPE_CHECKING:
    from monitor.session import BedCore

__all__ = ["resume"]


def resume(core: BedCore, journal: Journal) -> tuple[Input | None, int, list[AlarmEvent]]:
    """Replay the journal after its idle mark into `core`.

    The events are numbered on from the `seq` the bed had at the mark, so they carry the
    numbers they had live. Returns the last input replayed (None when there was nothing to
    resume: the bed was idle), how many inputs were replayed, and the regenerated events: the
    caller keeps those with a `seq` above the outbox's, which a crash caught between an input
    and the durable write of its events (they were never stored).
    """
    core.seq = journal.idle_seq
    last: Input | None = None
    n = 0
    events: list[AlarmEvent] = []
    for item in journal.inputs(after=journal.idle_mark):
        events += apply(core, decode(item)).events
        last = item
        n += 1
    return last, n, events
