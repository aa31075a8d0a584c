"""The bed's inputs as frozen types, with one serialisation and one `apply` (issue 18 item 2).

Everything that changes a bed's core is one of four inputs: a batch of samples, a tick, a nurse
command, a system-alarm condition. The live bed records an input in the journal and then
applies it (monitor/bed.py); resume (monitor/recovery.py) and `vigil report` decode the
journal's rows and apply them with the same function, so replay is live by construction; export
reads the same decoded inputs. The rows are those the journal has always held
(docs/ARCHITECTURE.md "Data flow"; monitor/journal.py), so journals written before stay readable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias, assert_never

from kernel.vocabulary import AlarmEvent, Param, Sample
from monitor.commands import CommandRejectedError, parse_command

if TYPE_CHECKING:
    from monitor.journal import Input, InputKind
    from monitor.session import BedCore, CommandOutcome

__all__ = [
    "Applied",
    "BedInput",
    "CommandInput",
    "ConditionInput",
    "SamplesInput",
    "TickInput",
    "apply",
    "decode",
    "encode",
]


@dataclass(frozen=True, slots=True)
class SamplesInput:
    """A batch of samples, as the bed's timekeeper stamped them, applied at bed time `t`."""

    t: float
    samples: tuple[Sample, ...]


@dataclass(frozen=True, slots=True)
class TickInput:
    """The ticks due up to `t`."""

    t: float


@dataclass(frozen=True, slots=True)
class CommandInput:
    """A nurse command at `t`.

    `payload` is the command as understood (canonical JSON), or None for one refused before it
    changed anything (then `refused` is its bounded summary).
    """

    t: float
    payload: str | None
    principal: str | None = None
    refused: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ConditionInput:
    """A system alarm's condition raised or cleared at `t` (`SystemAlarm`)."""

    t: float
    code: str
    active: bool
    message: str
    param: str | None = None
    value: float | None = None
    latching: bool | None = None


BedInput: TypeAlias = SamplesInput | TickInput | CommandInput | ConditionInput


def encode(item: BedInput) -> tuple[InputKind, float, Any]:
    """The journal row of `item`: (kind, t, JSON-able data)."""
    match item:
        case SamplesInput():
            rows = [
                [s.t, s.param.value, s.value if math.isfinite(s.value) else None, s.valid,
                 s.device_id, s.reason]
                for s in item.samples
            ]  # fmt: skip
            return "samples", item.t, rows
        case TickInput():
            return "tick", item.t, item.t
        case CommandInput():
            if item.payload is None:
                return "command", item.t, dict(item.refused)
            return "command", item.t, {"payload": item.payload, "principal": item.principal}
        case ConditionInput():
            data = {
                "code": item.code,
                "active": item.active,
                "message": item.message,
                "param": item.param,
                "value": item.value,
                "latching": item.latching,
            }
            return "condition", item.t, data
        case _:
            assert_never(item)


def decode(row: Input) -> BedInput:
    """The input a journal row holds: the inverse of `encode`.

    Units and MDC codes are not kept: the core ignores them.
    """
    d = row.data
    if row.kind == "samples":
        samples = tuple(
            Sample(
                t=float(t),
                param=Param(param),
                value=math.nan if value is None else float(value),
                valid=bool(valid),
                device_id=str(device_id),
                reason=reason,
            )
            for t, param, value, valid, device_id, reason in d
        )
        return SamplesInput(row.t, samples)
    if row.kind == "tick":
        return TickInput(float(d))
    if row.kind == "command":
        if "payload" not in d:
            return CommandInput(row.t, None, d.get("principal"), refused=dict(d))
        return CommandInput(row.t, str(d["payload"]), d.get("principal"))
    return ConditionInput(
        row.t,
        str(d["code"]),
        active=bool(d["active"]),
        message=str(d["message"]),
        param=d.get("param"),
        value=d.get("value"),
        latching=d.get("latching", False),
    )


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying one input did: its events, and a command's outcome."""

    events: list[AlarmEvent]
    outcome: CommandOutcome | None = None


def apply(core: BedCore, item: BedInput) -> Applied:
    """Apply `item` to `core`: the one function live, resume and report all use."""
    match item:
        case SamplesInput():
            return Applied(core.samples(item.samples))
        case TickInput():
            return Applied(core.tick(item.t))
        case CommandInput():
            if item.payload is None:
                return Applied([])  # refused live, journaled as a summary: it changed nothing
            try:
                cmd = parse_command(item.payload.encode())
            except CommandRejectedError:
                return Applied([])  # refused live too, before it changed anything
            outcome = core.command(cmd, item.t, principal=item.principal)
            return Applied([*outcome.ticked, *outcome.events], outcome)
        case ConditionInput():
            events = core.condition(
                item.code,
                active=item.active,
                now=item.t,
                message=item.message,
                param=item.param,
                value=item.value,
                latching=item.latching,
            )
            return Applied(events)
        case _:
            assert_never(item)
