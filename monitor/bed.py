"""The alarm loop of one bed: samples and ticks in, events out, strictly in order.

`Bed` owns the bed's `BedCore` (alarm engine + session + commands): it records every input in
the journal before applying it (monitor/journal.py, monitor/recovery.py) and hands the events to
the daemon's `emit` (monitor/daemon.py wires it to the ward link and the outbox). It does no
network I/O of its own: the daemon owns the links (docs/ARCHITECTURE.md "Data flow").
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from kernel.clock import Clock
from kernel.vocabulary import AlarmEvent, Sample, SystemAlarm
from monitor.authority import CommandSettings, refusal
from monitor.commands import CommandRejectedError, parse_command
from monitor.course import course_summary
from monitor.inputs import (
    Applied,
    BedInput,
    CommandInput,
    ConditionInput,
    SamplesInput,
    TickInput,
    apply,
    encode,
)
from monitor.journal import Journal
from monitor.queues import SampleQueue
from monitor.session import BedCore, SessionInfo
from monitor.timekeeper import ClockChange, Timekeeper

__all__ = ["Bed"]

log = logging.getLogger("vigil.daemon")

# Samples waiting for the bed loop; at 1 Hz x a dozen parameters this is minutes of backlog.
SAMPLE_QUEUE_LEN = 4096
# characters of a refusal's reason kept in the journal and sent back on …/cmd/result
REFUSAL_TEXT_MAX = 500
# Added to the longest alarm delay and the HR hold for the journal's idle mark lag (Bed).
IDLE_MARGIN_S = 10.0
# How often old journal inputs are pruned (`Journal.prune`), in seconds of bed time.
PRUNE_EVERY_S = 3600


class Bed:
    """The alarm path of one bed: samples and ticks in, events out, strictly in order.

    Everything that touches the `BedCore` runs in this one loop or in a synchronous call from
    the ward link (commands), so there is never a race; queued samples are processed before a
    command or a tick is applied, which keeps rows in time order (docs/ALARMS.md Reading 1).
    """

    def __init__(
        self,
        core: BedCore,
        *,
        clock: Clock,
        tick_grace_s: float,
        emit: Callable[[list[AlarmEvent], list[Sample]], None],
        journal: Journal | None = None,
        timekeeper: Timekeeper | None = None,
        commands: CommandSettings | None = None,
    ) -> None:
        self.core = core
        self._journal = journal
        # who may command the bed (monitor/authority.py); empty: everybody, as before
        self._commands = commands or CommandSettings()
        self.timekeeper = timekeeper or Timekeeper(max_ahead_s=5.0, max_behind_s=25.0)
        # devices whose clock is off, with their offset (s), while DEVICE_CLOCK_OFF is raised
        self._clocks_off: dict[str, float] = {}
        self.lag_s = 0.0
        # Idle ticks of the current idle stretch, (t, input id, seq). The journal's idle mark
        # trails the present by `_idle_lag`: a run that began before the mark and still holds
        # would have raised its alarm within its delay, so replaying from the mark rebuilds
        # every run, hold and clearing timer that matters (docs/ALARMS.md "Run semantics", the HR
        # hold of Reading 5).
        self._idle_ticks: deque[tuple[float, int, int]] = deque()
        self._pruned_at = -math.inf
        policy = core.policy
        delays = [r.delay_s for r in policy.continuous] + [policy.general.clear_after_s]
        self._idle_lag = max(delays) + policy.general.hr_hold_s + IDLE_MARGIN_S
        self._clock = clock
        self._grace = tick_grace_s
        self._emit = emit
        self._wake = asyncio.Event()
        self.samples = SampleQueue(SAMPLE_QUEUE_LEN, self._wake)
        self._tick_due: float | None = None
        self.last_tick: float | None = None
        # time.monotonic() when the last tick was processed: the watchdog's proof of life
        self.last_tick_monotonic: float | None = None
        self.ticked = asyncio.Event()

    def drain(self) -> None:
        """Process every queued sample now, in the bed's time (`monitor.timekeeper`)."""
        batch = self.samples.take_all()
        if batch:
            now = self._clock.now()
            batch, changes = self.timekeeper.stamp(batch, now)
            # how far behind its samples the bed is (the newest of the batch, bed seconds)
            self.lag_s = max(0.0, now - max(s.t for s in batch))
            self._emit(self._live(SamplesInput(now, tuple(batch))).events, batch)
            if changes:
                self._clock_changes(changes)

    def _clock_changes(self, changes: list[ClockChange]) -> None:
        """DEVICE_CLOCK_OFF while any device's clock is off, naming each with its offset.

        Raised anew when another device's clock goes off (or one's offset is measured again),
        so every change is announced, as DEVICE_DISCONNECTED does for a second device lost.
        """
        before = dict(self._clocks_off)
        for c in changes:
            if c.offset_s is None:
                self._clocks_off.pop(c.device_id, None)
            else:
                self._clocks_off[c.device_id] = c.offset_s
        if self._clocks_off == before:
            return
        if before:
            back = ", ".join(sorted(set(before) - set(self._clocks_off))) or "offset changed"
            self.condition(
                SystemAlarm.DEVICE_CLOCK_OFF, active=False, message=f"clock right again: {back}"
            )
        if self._clocks_off:
            off = "; ".join(f"{d} {o:+.0f} s" for d, o in self._clocks_off.items())
            first, offset = next(iter(self._clocks_off.items()))
            log.warning("event=device_clock_off devices=%r", off)
            self.condition(
                SystemAlarm.DEVICE_CLOCK_OFF,
                active=True,
                param=first,
                value=offset,
                message=f"monitor clock off the bed's, samples re-stamped: {off}",
            )

    def _mark_idle(self, tick: float, input_id: int) -> None:
        assert self._journal is not None
        ticks = self._idle_ticks
        if not self.core.idle:
            ticks.clear()
            return
        ticks.append((tick, input_id, self.core.seq))
        horizon = tick - self._idle_lag
        while len(ticks) > 1 and ticks[1][0] <= horizon:
            ticks.popleft()
        t, mark, seq = ticks[0]
        if t <= horizon:
            self._journal.idle(mark, seq)

    def _closed_info(self, before: SessionInfo, now: float) -> dict[str, Any]:
        journal = self._journal
        assert journal is not None
        record = journal.session(before.session_id)
        kept = record.info if record is not None else {}
        return asdict(before) | {"baseline": kept.get("baseline"), "discharge_t": now}

    def _record(self, item: BedInput) -> int:
        """Journal an input before it is applied (`monitor.journal`); its id, 0 without one."""
        return 0 if self._journal is None else self._journal.record(*encode(item))

    def _live(self, item: BedInput) -> Applied:
        """Live is "record, then apply" (monitor/inputs.py).

        The input goes to the journal first, then to the core through the one `apply` that
        resume and report use.
        """
        self._record(item)
        return apply(self.core, item)

    def _journal_session(self, before: SessionInfo | None, input_id: int, now: float) -> None:
        """Keep the journal's session record in step with what the command did."""
        journal, after = self._journal, self.core.session
        if journal is None:
            return
        if after is not None:
            baseline = self.core.engine.baseline
            info = asdict(after) | {"baseline": asdict(baseline) if baseline else None}
            if after is not before:
                journal.session_opened(info, input_id)
            else:
                journal.session_updated(info)
        elif before is not None:
            journal.session_updated(self._closed_info(before, now))
            journal.session_closed(before.session_id, now, input_id)

    def command(self, payload: bytes, principal: str | None = None) -> dict[str, Any]:
        """Apply one command payload; return the result for `…/cmd/result`.

        `principal`: the broker login the command came from (its topic, monitor/authority.py),
        checked against `[commands]` and recorded beside the payload's `user`.
        """
        self.drain()
        now = self._clock.now()
        try:
            # RFC 8259 §8.1: JSON between systems is UTF-8; journaled as the text parsed
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            log.warning("event=command_refused reason='not UTF-8'")
            return {"request_id": None, "ok": False, "error": "not UTF-8 JSON"}
        try:
            cmd = parse_command(text.encode())
        except CommandRejectedError as exc:
            # Journaled as a bounded summary: a refused command changes nothing, and a console
            # sending megabytes of refusals must not fill the disk (issue 17, item 8).
            reason = exc.reason[:REFUSAL_TEXT_MAX]
            request_id = exc.request_id[:100] if exc.request_id else None
            summary = {"refused": reason, "bytes": len(payload), "request_id": request_id}
            self._record(CommandInput(now, None, refused=summary))
            log.warning("event=command_refused request_id=%r reason=%r", request_id, reason)
            return {"request_id": request_id, "ok": False, "error": reason}
        denied = refusal(self._commands, cmd, principal)
        if denied is not None:
            summary = {"refused": denied, "bytes": len(payload), "request_id": cmd.request_id,
                       "principal": principal, "user": cmd.user}  # fmt: skip
            self._record(CommandInput(now, None, principal, refused=summary))
            log.warning(
                "event=command_refused cmd=%s principal=%s user=%s request_id=%r reason=%r",
                cmd.cmd, principal, cmd.user, cmd.request_id, denied,
            )  # fmt: skip
            return {"request_id": cmd.request_id, "ok": False, "error": denied}
        canonical = cmd.model_dump_json()
        if self._journal is not None:
            answered = self._journal.answer(cmd.request_id, canonical)
            if answered is not None:
                # the same accepted command delivered again (QoS 1 after a restart, a console
                # retrying): answered as before, never applied twice (issue 17, item 7)
                log.warning("event=command_repeated cmd=%s request_id=%r", cmd.cmd, cmd.request_id)
                return answered
        # journaled as the command understood, whatever padding its payload carried
        item = CommandInput(now, canonical, principal)
        input_id = self._record(item)
        before = self.core.session
        outcome = apply(self.core, item).outcome
        if outcome is None:  # pragma: no cover - the payload parsed a moment ago
            raise RuntimeError(f"command {cmd.request_id!r} was not applied")
        self._journal_session(before, input_id, now)
        log.info(
            "event=command cmd=%s user=%s principal=%s request_id=%s ok=%s error=%r",
            cmd.cmd,
            cmd.user,
            principal,
            cmd.request_id,
            outcome.ok,
            outcome.error,
        )
        self._emit([*outcome.ticked, *outcome.events], [])
        result = outcome.result_json()
        if outcome.ok and cmd.cmd in {"open_session", "record_score"}:
            # shown to the nurse at once: which infusion of the course this is, and the
            # response so far (docs/PROTOCOL.md "Course")
            result["course"] = self.course(now)
        if self._journal is not None and outcome.ok:
            self._journal.answered(cmd.request_id, canonical, now, result)
        return result

    def course(self, now: float) -> dict[str, Any] | None:
        """The open session's patient's course (`monitor.course`), or None without one."""
        session = self.core.session
        if session is None or self._journal is None:
            return None
        infos = [r.info for r in self._journal.sessions(session.patient_id)]
        return course_summary(infos, at=now, planned=session.infusion_start_t is None)

    def condition(
        self,
        code: SystemAlarm,
        *,
        active: bool,
        message: str,
        param: str | None = None,
        value: float | None = None,
    ) -> None:
        """Raise or clear a system alarm now (latching as `code` is)."""
        self.drain()
        now = self._clock.now()
        item = ConditionInput(now, code, active, message, param, value, latching=code.latching)
        self._emit(self._live(item).events, [])

    def tick(self, tick: float) -> None:
        """Apply the ticks due up to `tick` (queued samples first)."""
        self.drain()
        item = TickInput(tick)
        input_id = self._record(item)
        self._emit(apply(self.core, item).events, [])
        if self._journal is not None:
            self._mark_idle(tick, input_id)
            if tick - self._pruned_at >= PRUNE_EVERY_S:
                # a bed that runs for months must not grow its journal for ever
                self._pruned_at = tick
                self._journal.prune(tick)
        self.last_tick = tick
        self.last_tick_monotonic = time.monotonic()
        self.ticked.set()

    async def run(self) -> None:
        """The bed loop and its tick task, until cancelled."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._ticks(), name="bed.ticks")
            while True:
                await self._wake.wait()
                self._wake.clear()
                self.drain()
                if self._tick_due is not None:
                    tick, self._tick_due = self._tick_due, None
                    self.tick(tick)

    async def _ticks(self) -> None:
        # docs/ALARMS.md Reading 1: ticks on whole epoch seconds. Each is applied a little after its
        # second (the grace) so samples stamped just before it are processed first.
        while True:
            tick = math.floor(self._clock.now()) + 1.0
            await self._clock.sleep_until(tick + self._grace)
            # every tick due by now, not only the one waited for: after a stall (or a jump of
            # a simulated clock) the engine catches up on all of them at once, in order
            self._tick_due = float(math.floor(self._clock.now() - self._grace))
            self._wake.set()
