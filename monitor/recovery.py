"""Resuming a bed after a crash: the journal's inputs replayed into a fresh core.

See `monitor.journal` for why replaying inputs is exact. `resume` applies every input after
the journal's idle mark to `core` exactly as the live bed loop applied it (same method, same
time, same order) and throws away the events: they were journaled, and published or queued in
the outbox, the first time. `seq` is then the caller's to set from the outbox.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from monitor.commands import CommandRejectedError, parse_command
from monitor.journal import Input, Journal, samples_from

if TYPE_CHECKING:
    from monitor.session import BedCore

__all__ = ["apply_input", "resume"]


def apply_input(core: BedCore, item: Input) -> None:
    """Apply one journaled input to `core`, as the bed loop did live."""
    if item.kind == "samples":
        core.samples(samples_from(item.data))
    elif item.kind == "tick":
        core.tick(float(item.data))
    elif item.kind == "command":
        try:
            cmd = parse_command(item.data["payload"].encode())
        except CommandRejectedError:
            return  # refused live too, before it changed anything
        core.command(cmd, item.t)
    else:
        d = item.data
        core.condition(
            d["code"],
            active=d["active"],
            now=item.t,
            message=d["message"],
            param=d.get("param"),
            value=d.get("value"),
            latching=d.get("latching", False),
        )


def resume(core: BedCore, journal: Journal) -> tuple[Input | None, int]:
    """Replay the journal after its idle mark into `core`.

    Returns the last input replayed (None when there was nothing to resume: the bed was idle)
    and how many inputs were replayed.
    """
    last: Input | None = None
    n = 0
    for item in journal.inputs(after=journal.idle_mark):
        apply_input(core, item)
        last = item
        n += 1
    return last, n
