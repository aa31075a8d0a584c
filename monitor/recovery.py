"""Resuming a bed after a crash: the journal's inputs replayed into a fresh core.

See `monitor.journal` for why replaying inputs is exact. `resume` applies every input after
the journal's idle mark to `core` exactly as the live bed loop applied it (same method, same
time, same order). The events it regenerates were, as a rule, made durable the first time;
those a crash caught before their durable write are handed back to be stored now.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel.vocabulary import AlarmEvent
from monitor.commands import CommandRejectedError, parse_command
from monitor.journal import Input, Journal, samples_from

if TYPE_CHECKING:
    from monitor.session import BedCore

__all__ = ["apply_input", "resume"]


def apply_input(core: BedCore, item: Input) -> list[AlarmEvent]:
    """Apply one journaled input to `core`, as the bed loop did live; the events it made."""
    if item.kind == "samples":
        return core.samples(samples_from(item.data))
    if item.kind == "tick":
        return core.tick(float(item.data))
    if item.kind == "command":
        if "payload" not in item.data:
            return []  # refused live, journaled as a summary: it changed nothing
        try:
            cmd = parse_command(item.data["payload"].encode())
        except CommandRejectedError:
            return []  # refused live too, before it changed anything
        outcome = core.command(cmd, item.t, principal=item.data.get("principal"))
        return [*outcome.ticked, *outcome.events]
    d = item.data
    return core.condition(
        d["code"],
        active=d["active"],
        now=item.t,
        message=d["message"],
        param=d.get("param"),
        value=d.get("value"),
        latching=d.get("latching", False),
    )


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
        events += apply_input(core, item)
        last = item
        n += 1
    return last, n, events
