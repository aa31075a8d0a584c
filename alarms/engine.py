"""The alarm engine: docs/ALARMS.md applied to an ordered stream of rows and ticks.

One engine watches one bed. It is pure: the same rows give the same events, whether they come
live from the drivers or from `vigil replay`. Feed it rows in time order with `row(...)` (each row
first runs the 1 s ticks due at or before its time, Reading 1), call `tick(now)` while live, and
`flush()` when a recording ends. Nothing here reads a clock or does I/O.

Vocabulary of this module:
- a *row* is one sample (`Param`) or one session step (`SessionEvent`) at time `t`;
- a *moment* is a row or a tick; timed alarms are checked after every moment (Reading 2);
- a *signal* is what a continuous rule watches: a continuous `Param`, or `HRE` (Reading 5).
"""

from __future__ import annotations

import copy
import functools
import math
import statistics
import sys
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from alarms.policy import (
    OPS,
    ContinuousRule,
    DeterminationClause,
    DeterminationRule,
    NoDataRule,
    Policy,
)
from kernel.vocabulary import (
    PHYSIOLOGICAL_RANGE,
    SYSTEM_ALARM_CODES,
    AlarmEvent,
    AlarmKind,
    AlarmState,
    Param,
    Phase,
    Priority,
    SessionEvent,
    SystemAlarm,
    system_alarm,
)

__all__ = ["ActiveAlarm", "AlarmEngine", "Baseline", "EngineState", "Rows"]

HRE = "HRE"


def fmt(x: float) -> str:
    """A number as people read it: `172`, `93.5`."""
    return f"{x:g}" if math.isfinite(x) else "-"


@dataclass
class ActiveAlarm:
    """An alarm that is active (or acknowledged but not yet cleared)."""

    code: str
    priority: Priority
    kind: AlarmKind
    activated_t: float
    param: str | None
    value: float | None
    limit: float | None
    latching: bool
    acknowledged: bool = False
    level: int = 0
    # Would a non-latching twin still be active? Decides whether an acknowledged latched alarm
    # clears at once or waits for its condition to end ("Alarm system behaviour").
    condition: bool = True
    signal: str | None = None
    # When its condition last ended (None while it holds): a latching alarm's condition end is
    # no event (docs/ALARMS.md "States"), the active list shows it with this time.
    ended_t: float | None = None


@dataclass(frozen=True)
class Baseline:
    """Baseline taken at infusion start (docs/ALARMS.md "Baseline"); None where it cannot be had."""

    t: float
    sys0: float | None
    dia0: float | None
    hr0: float | None
    spo2_0: float | None
    pre_determinations: int


@dataclass
class _Run:
    """Run state of one continuous rule ("Run semantics")."""

    hold_start: float | None = None
    off_start: float | None = None


@dataclass
class _Determination:
    t: float
    sys: float
    dia: float
    phase: Phase


@dataclass
class _Session:
    start: float
    phase_start: float
    determinations: list[_Determination] = field(default_factory=list)
    baseline: Baseline | None = None
    stop_t: float | None = None
    discharge_checked: bool = False


# the signals whose valid samples are kept for the baseline and surge windows (Reading 8)
_HISTORY = (HRE, Param.SPO2.value)


@dataclass
class EngineState:
    """Everything one engine carries from one moment to the next, in one object.

    The policy says what to evaluate; this is where the evaluation stands: the phase and the
    session (determinations, baseline, timers), the active alarms, each continuous rule's runs,
    each signal's last sample time, the latest valid values, the valid HR that HRE holds
    (Reading 5), the last valid time per parameter (the no-data alarms), the windows' histories
    and a determination whose cuff rows are still arriving (Reading 6). `AlarmEngine.snapshot`
    copies it out and `AlarmEngine.resume_from` starts an engine from it.
    """

    phase: Phase
    session: _Session | None
    active: dict[str, ActiveAlarm]
    now: float
    runs: dict[str, _Run]
    signal_last_t: dict[str, float]
    latest: dict[str, float]  # latest valid value per signal / param
    last_valid_hr: tuple[float, float] | None  # (t, value)
    last_valid_t: dict[Param, float]
    last_hre_src: Param
    hist: dict[str, deque[tuple[float, float]]]  # valid (t, value) of `_HISTORY`, recent
    pending: dict[Param, float]  # the cuff rows of the determination being read
    pending_t: float | None

    @classmethod
    def initial(cls, policy: Policy) -> EngineState:
        """The state of an engine that has seen nothing yet."""
        return cls(
            phase=Phase.NONE,
            session=None,
            active={},
            now=-math.inf,
            runs={r.code: _Run() for r in policy.continuous},
            signal_last_t={},
            latest={},
            last_valid_hr=None,
            last_valid_t={},
            last_hre_src=Param.HR,
            hist={signal: deque() for signal in _HISTORY},
            pending={},
            pending_t=None,
        )


def _median(values: list[float]) -> float | None:
    # Reading 8: an even count takes the mean of the two middle values (statistics.median does).
    return statistics.median(values) if values else None


class AlarmEngine:
    """docs/ALARMS.md for one bed, one moment at a time."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        g = policy.general
        self._gap = g.run_gap_s
        self._clear_after = g.clear_after_s
        self._hold = g.hr_hold_s
        self._order = {code: i for i, code in enumerate([*policy.codes(), *SystemAlarm])}
        # valid HRE and SpO2 samples for the baseline and surge windows (Reading 8)
        keep = max(
            [policy.baseline.window_s]
            + [c.hre_window_s for r in policy.determination for c in r.when if c.hre_ratio]
        )
        self._keep_s = keep + 1.0
        self.state = EngineState.initial(policy)
        # the signals built as streams per batch: the rules' and the baseline's (HRE, SpO2)
        self._stream_signals = sorted({str(r.signal) for r in policy.continuous} | set(_HISTORY))
        self._rules_of: dict[str, tuple[ContinuousRule, ...]] = {
            sig: tuple(r for r in policy.continuous if r.signal == sig)
            for sig in self._stream_signals
        }
        self._batch: _Batch | None = None

    # ------------------------------------------------------------------ public interface

    @property
    def now(self) -> float:
        """Time of the last moment processed."""
        return self.state.now

    @property
    def phase(self) -> Phase:
        """The current phase."""
        return self.state.phase

    @property
    def active(self) -> Mapping[str, ActiveAlarm]:
        """The active alarms by code, read-only: they change only through the engine."""
        return MappingProxyType(self.state.active)

    @property
    def baseline(self) -> Baseline | None:
        """The current session's baseline, once the infusion started."""
        return self.state.session.baseline if self.state.session else None

    def snapshot(self) -> EngineState:
        """A copy of everything the engine carries between moments (`EngineState`)."""
        return copy.deepcopy(self.state)

    @classmethod
    def resume_from(cls, policy: Policy, state: EngineState) -> AlarmEngine:
        """An engine that goes on from `state` (a `snapshot`) as the one that took it would.

        The state is copied: the snapshot stays as it was, whatever the new engine does.
        """
        engine = cls(policy)
        engine.state = copy.deepcopy(state)
        return engine

    def row(
        self, t: float, what: Param | SessionEvent, value: float, *, valid: bool = True
    ) -> list[AlarmEvent]:
        """Process one row (after the ticks due at or before `t`); return the events it caused.

        `value` is NaN for a missing value; `valid` is the device's verdict (the physiological
        range is checked here). A batch of one: the same code as `rows`.
        """
        return self.rows(Rows.of([(t, what, value, valid)]))

    def tick(self, now: float) -> list[AlarmEvent]:
        """Run the 1 s ticks due up to `now` (live mode); return their events."""
        out: list[AlarmEvent] = []
        if self.state.pending_t is not None and now > self.state.pending_t:
            self._close_determination(out)
        self._ticks_until(now, out)
        return out

    def flush(self) -> list[AlarmEvent]:
        """Close a determination still waiting for rows (end of a recording)."""
        out: list[AlarmEvent] = []
        if self.state.pending_t is not None:
            self._close_determination(out)
        return out

    def acknowledge(self, code: str, t: float, user: str | None = None) -> list[AlarmEvent]:
        """Acknowledge an active alarm ("Alarm system behaviour").

        A latched alarm whose condition has ended clears at once; otherwise the alarm stays,
        silenced, until it clears. Acknowledging twice, or an alarm that is not active, changes
        nothing and returns no event.
        """
        alarm = self.state.active.get(code)
        if alarm is None or alarm.acknowledged:
            return []
        alarm.acknowledged = True
        t = max(t, self.state.now)
        out = [
            self._event(
                alarm, AlarmState.ACKNOWLEDGED, t, message=f"{code} acknowledged", user=user
            )
        ]
        if alarm.latching and not alarm.condition:
            out.append(
                self._clear(code, t, message=f"{code} acknowledged after its condition ended")
            )
        return out

    def condition(
        self,
        code: str,
        *,
        active: bool,
        t: float,
        message: str,
        param: str | None = None,
        value: float | None = None,
        latching: bool | None = None,
    ) -> list[AlarmEvent]:
        """Raise or clear a system alarm (`SystemAlarm`) whose condition the caller watches.

        Raising an active one, or clearing one that is not, changes nothing and returns no
        event. Not latching, a system alarm clears when its condition ends,
        acknowledged or not; latching (`SystemAlarm.latching`), it records an occurrence that
        is already over (its condition ends at once) and stays until acknowledged. `latching`
        may be given (a journal row says it) but must agree with the alarm's. Call `tick(t)`
        first in live use, so events stay in time order.

        Raises:
            KeyError: `code` is not a system alarm.
            ValueError: `latching` contradicts the alarm's.
        """
        system = system_alarm(code)
        priority, kind = system.priority, system.kind
        if latching is not None and latching != system.latching:
            raise ValueError(f"{code} is {'' if system.latching else 'not '}latching")
        latching = system.latching
        t = max(t, self.state.now)
        out: list[AlarmEvent] = []
        if active and latching and code in self.state.active:
            # a new occurrence of a latched condition (a second gap) is announced on its own,
            # not hidden behind the first, acknowledged or not
            out.append(self._clear(code, t, message=f"{code} superseded by a new occurrence"))
        elif active == (code in self.state.active):
            return []
        if not active:
            if self.state.active[code].latching:
                return []  # a latched occurrence ends with its acknowledgement
            return [self._clear(code, t, message=message)]
        self._new_alarm(
            out,
            t=t,
            code=code,
            priority=priority,
            kind=kind,
            param=param,
            value=value,
            limit=None,
            latching=latching,
            message=message,
            condition=not latching,
        )
        return out

    def restore(self, alarm: ActiveAlarm) -> None:
        """Make a system alarm active again, as it was announced before a restart, silently.

        Raises:
            KeyError: `alarm.code` is not a system alarm (the policy's alarms come back by
                replaying the journal, never by being set).
        """
        if alarm.code not in SYSTEM_ALARM_CODES:
            raise KeyError(alarm.code)
        self.state.active.setdefault(alarm.code, alarm)

    # ------------------------------------------------------------------ batches, with numpy

    def rows(self, batch: Rows) -> list[AlarmEvent]:
        """Process a batch of rows in order; return the events they caused.

        The one path of the engine: the live bed (a few samples), `row` (one), resume and
        `vigil replay` (a whole recording) all come here. The continuous rules are evaluated
        over whole columns per signal (`_Batch`); then only the rows at which something can
        change (a rule falling due or clearing, a no-data alarm due or clearing, a fixed
        deadline, a determination, a session step) are stepped through, in row order, each as
        the moment it is (Reading 1). Between two such rows nothing changes but run state,
        histories and latest values, which the arrays already hold.
        """
        out: list[AlarmEvent] = []
        n = len(batch)
        if n == 0:
            return out
        b = self._columns(batch)
        self._batch = b
        try:
            k = 0
            while True:
                k = self._next_step(b, k)
                if k >= n:
                    break
                if k > 0:
                    # the rows passed over were moments too: now is at least their time
                    self.state.now = max(self.state.now, b.tmax[k - 1])
                b.pos = k
                k = self._step(b, k, out)
            b.pos = n
            self._carry(b)
        finally:
            self._batch = None
        return out

    def _next_step(self, b: _Batch, k: int) -> int:
        """The first row at or after `k` at which something may change, or `b.n`."""
        if k >= b.n:
            return b.n
        if self.state.pending_t is not None:
            return k  # a determination waits for the row that closes it
        nxt = _after(b.static, k, b.n)
        if nxt == k:
            return k
        nxt = self._next_no_data(b, k, self._next_continuous(b, k, nxt))
        due = self._next_due_fixed()
        if math.isfinite(due):
            nxt = min(nxt, b.first_at_or_after(due, k))
        return nxt

    def _next_continuous(self, b: _Batch, k: int, nxt: int) -> int:
        """The first row at or after `k` (before `nxt`) where a continuous alarm may change."""
        for rule in self.policy.continuous:
            alarm = self.state.active.get(rule.code)
            stream = b.streams[rule.signal]
            if alarm is None:
                if self.state.phase in rule.phases:
                    nxt = min(nxt, b.due[rule.code].on.next_row(stream, k, nxt))
            elif not alarm.latching or alarm.acknowledged or alarm.condition:
                nxt = min(nxt, b.due[rule.code].off.next_row(stream, k, nxt))
            else:
                # latched, its condition over: the row where it returns sets `condition` back
                # (the active list's `latched`, docs/ALARMS.md "States"; no event)
                nxt = min(nxt, b.due[rule.code].on.next_row(stream, k, nxt))
        return nxt

    def _next_no_data(self, b: _Batch, k: int, nxt: int) -> int:
        """The first row at or after `k` (before `nxt`) where a no-data alarm may change."""
        session = self.state.session
        if session is not None:
            for nd in self.policy.no_data:
                if nd.code in self.state.active:
                    nxt = min(nxt, _after(b.nd_valid[nd.code], k, nxt))
                elif self.state.phase in nd.phases:
                    # due at a row when a tick before it or its own check sees the gap:
                    # t - max(last valid before it, session start) >= after_s
                    first = max(k, b.first_at_or_after(session.start + nd.after_s, k))
                    nxt = min(nxt, _after(b.nd_late[nd.code], first, nxt))
        return nxt

    def _step(self, b: _Batch, k: int, out: list[AlarmEvent]) -> int:
        """Row `k` as the moment it is (with the cuff rows of its determination); the next row."""
        t = float(b.t[k])
        what = _CODES[int(b.what[k])]
        if self.state.pending_t is not None and (t != self.state.pending_t or what not in _NIBP):
            self._close_determination(out)
        self._ticks_until(t, out)
        self.state.now = max(self.state.now, t)
        b.pos = k + 1
        if isinstance(what, SessionEvent):
            self._session_event(t, what, out)
        elif what in _NIBP:
            # the cuff rows that follow at the same time join the determination (Reading 6);
            # they are moments at which nothing else can happen
            cuff: Param | SessionEvent = what
            while True:
                assert isinstance(cuff, Param)
                self.state.pending_t = t
                self.state.pending[cuff] = float(b.value[k]) if b.ok[k] else math.nan
                k += 1
                b.pos = k
                if len(self.state.pending) == len(_NIBP):
                    self._close_determination(out)
                    return k
                if k == b.n or b.t[k] != t or not _IS_NIBP[b.what[k]]:
                    return k
                cuff = _CODES[int(b.what[k])]
        else:
            self._sample_at(b, k, t, what, out)
        self._timed(out)
        return k + 1

    def _sample_at(self, b: _Batch, k: int, t: float, param: Param, out: list[AlarmEvent]) -> None:
        """The events of the sample at row `k` (its runs are in the batch's arrays)."""
        if b.ok[k]:
            for nd in self.policy.no_data:
                if param in nd.params and nd.code in self.state.active:
                    out.append(
                        self._clear(nd.code, t, value=0.0, message=f"{_params_text(nd)} data back")
                    )
        for signal in b.signals_of[param]:
            stream = b.streams[signal]
            p = stream.at(k)
            if p < 0:
                continue  # Reading 5: an HR row past the hold is no HRE sample
            value = float(stream.v[p])
            src = _CODES[int(stream.src[p])]
            assert isinstance(src, Param)
            for rule in self._rules_of[signal]:
                due = b.due[rule.code]
                self._continuous_transition(
                    rule,
                    t,
                    value,
                    src,
                    due_on=due.on.has(p),
                    due_off=due.off.has(p),
                    out=out,
                )

    def _carry(self, b: _Batch) -> None:
        """Keep what the batch leaves behind for the next one (state at its last row)."""
        self.state.now = max(self.state.now, b.tmax[-1])
        for param, idx in b.valid_rows.items():
            if len(idx):
                k = int(idx[-1])
                self.state.last_valid_t[param] = float(b.t[k])
                if param is not Param.HR:
                    continue
                self.state.last_valid_hr = (float(b.t[k]), float(b.value[k]))
        for signal, stream in b.streams.items():
            if not len(stream.t):
                continue
            self.state.signal_last_t[signal] = float(stream.t[-1])
            g = stream.last_ok_before(b.n)
            if g >= 0:
                self.state.latest[signal] = float(stream.v[g])
                if signal == HRE:
                    src = _CODES[int(stream.src[g])]
                    assert isinstance(src, Param)
                    self.state.last_hre_src = src
            hist = self.state.hist.get(signal)
            if hist is not None:
                _extend_history(hist, stream, float(b.tmax[-1]) - self._keep_s)
        self._carry_runs(b)

    def _carry_runs(self, b: _Batch) -> None:
        for rule in self.policy.continuous:
            stream = b.streams.get(rule.signal)
            if stream is None or not len(stream.t):
                continue
            run = self.state.runs[rule.code]
            due = b.due[rule.code]
            run.hold_start, run.off_start = due.hold_start, due.off_start
            alarm = self.state.active.get(rule.code)
            if alarm is not None:
                # a latched alarm's condition, for an acknowledgement between batches
                on, off = due.on.last(), due.off.last()
                if (on >= 0 or off >= 0) and alarm.condition != (on > off):
                    alarm.condition = on > off
                    # (the stepping has set both already where it went through these rows)
                    alarm.ended_t = None if on > off else float(b.t[due.off.row_lo[-1]])

    def _columns(self, rows: Rows) -> _Batch:
        """The batch as columns, from the state carried so far (`_Batch`)."""
        n = len(rows)
        t, what, value = rows.t, rows.what, rows.value
        ok = rows.valid & rows.in_range
        # in replay time never goes back, and the running maximum is time itself
        ordered = bool((t[1:] >= t[:-1]).all())
        tmax = t if ordered else np.maximum.accumulate(t)
        static = np.flatnonzero(_STATIC.take(what))
        valid_rows: dict[Param, np.ndarray] = {}
        for param in _CONTINUOUS:
            of_param = what == _CODE_OF[param]
            if of_param.any():
                valid_rows[param] = np.flatnonzero(of_param & ok)
        streams = self._streams(t, what, value, ok, valid_rows.get(Param.HR))
        signals_of: dict[Param, tuple[str, ...]] = {
            p: ((HRE,) if p in (Param.HR, Param.PR) else ()) + ((p.value,) if p in streams else ())
            for p in _CONTINUOUS
        }
        due = {
            rule.code: _due(
                streams[rule.signal],
                rule,
                self.state.runs[rule.code],
                clear_after=self._clear_after,
            )
            for rule in self.policy.continuous
        }
        nd_valid: dict[str, np.ndarray] = {}
        nd_late: dict[str, np.ndarray] = {}
        for nd in self.policy.no_data:
            of_rule = np.zeros(len(_CODES), dtype=bool)
            of_rule[[_CODE_OF[p] for p in nd.params]] = True
            valid = np.flatnonzero(of_rule.take(what) & ok)
            nd_valid[nd.code] = valid
            carry = max(self.state.last_valid_t.get(p, -math.inf) for p in nd.params)
            nd_late[nd.code] = _late_rows(t, tmax, valid, carry, nd.after_s)
        after_carry = ordered and t[0] >= max(self.state.last_valid_t.values(), default=-math.inf)
        return _Batch(
            n, t, what, value, ok, tmax, ordered, static, streams, signals_of, due,
            valid_rows, nd_valid, nd_late, after_carry,
        )  # fmt: skip

    def _streams(
        self,
        t: np.ndarray,
        what: np.ndarray,
        value: np.ndarray,
        ok: np.ndarray,
        valid_hr: np.ndarray | None,
    ) -> dict[str, _Stream]:
        """Each signal's samples; `valid_hr` the rows of valid HR samples (`_columns`' own)."""
        gap = self._gap
        out: dict[str, _Stream] = {}
        hr_code = _CODE_OF[Param.HR]
        is_hr_row = what == hr_code
        is_beat = is_hr_row | (what == _CODE_OF[Param.PR])
        # Reading 5: HRE is the latest valid HR while it is at most `hr_hold_s` old, else the
        # PR row's own value; an HR row past the hold is no HRE sample (a valid HR row never
        # is: it is its own latest valid HR). Those rows (leads off: few) are found first, by
        # the last valid HR row before each, so the beat rows are gathered once.
        last = self.state.last_valid_hr
        carried_t = last[0] if last is not None else math.nan
        bad_hr = np.flatnonzero(is_hr_row & ~ok)
        if len(bad_hr):
            assert valid_hr is not None  # the batch has HR rows
            before = valid_hr.searchsorted(bad_hr)  # valid HR rows before each
            since = np.full(len(bad_hr), carried_t)
            has = before > 0
            since[has] = t.take(valid_hr.take(before[has] - 1))
            with np.errstate(invalid="ignore"):
                past = ~(t.take(bad_hr) - since <= self._hold)  # NaN: no valid HR yet
            is_beat[bad_hr[past]] = False
        beat = np.flatnonzero(is_beat)
        # `take` with native indices: fancy indexing converts and checks them first
        bt, bv, bok = t.take(beat), value.take(beat), ok.take(beat)
        idx = np.arange(len(bt), dtype=np.intp)
        idx[~(is_hr_row.take(beat) & bok)] = -1
        np.maximum.accumulate(idx, out=idx)
        # the rows before the batch's first valid HR go on from the one carried
        unseen = int(idx.searchsorted(0))
        lvt, lvv = bt.take(idx), bv.take(idx)
        lvt[:unseen], lvv[:unseen] = last or (math.nan, math.nan)
        with np.errstate(invalid="ignore"):
            from_hr = bt - lvt <= self._hold  # NaN (no valid HR yet) compares false
        out[HRE] = _Stream.of(
            beat,
            t=bt,
            v=np.where(from_hr, lvv, bv),
            ok=from_hr | bok,
            # the rows kept that do not take the HR are PR rows
            src=np.where(from_hr, np.int8(hr_code), np.int8(_CODE_OF[Param.PR])),
            last_t=self.state.signal_last_t.get(HRE),
            gap=gap,
        )
        for signal in self._stream_signals:
            if signal == HRE:
                continue
            code = _CODE_OF[Param(signal)]
            rows = np.flatnonzero(what == code)
            out[signal] = _Stream.of(
                rows,
                t=t.take(rows),
                v=value.take(rows),
                ok=ok.take(rows),
                src=np.full(len(rows), code, dtype=np.int8),
                last_t=self.state.signal_last_t.get(signal),
                gap=gap,
            )
        return out

    # ------------------------------------------------------------------ state as of now
    #
    # While a batch is stepped through, the state "now" is what the carried state and the
    # batch's rows before `_Batch.pos` make; these read it without building it row by row.

    def _latest_of(self, key: str) -> float | None:
        b = self._batch
        if b is not None:
            stream = b.streams.get(key)
            if stream is not None:
                g = stream.last_ok_before(b.pos)
                if g >= 0:
                    return float(stream.v[g])
        return self.state.latest.get(key)

    def _hre_src(self) -> Param:
        b = self._batch
        if b is not None:
            stream = b.streams[HRE]
            g = stream.last_ok_before(b.pos)
            if g >= 0:
                src = _CODES[int(stream.src[g])]
                assert isinstance(src, Param)
                return src
        return self.state.last_hre_src

    def _window(self, signal: str, lo: float, hi: float) -> list[float]:
        """Valid values of `signal` with lo <= t <= hi so far (Reading 8: inclusive)."""
        values = [v for ts, v in self.state.hist[signal] if lo <= ts <= hi]
        b = self._batch
        if b is not None:
            stream = b.streams[signal]
            sel = stream.ok_window(lo, hi, b.pos)
            values += stream.v[sel].tolist()
        return values

    # ------------------------------------------------------------------ time

    def _next_due_fixed(self) -> float:
        """`_next_due` without the no-data deadlines (those move with the data)."""
        due = math.inf
        session = self.state.session
        if session is not None:
            od = self.policy.nibp_overdue
            if (
                od is not None
                and od.code not in self.state.active
                and self.state.phase in _OVERDUE_PHASES
            ):
                due = min(due, self._overdue_ref(session) + self._overdue_limit())
            dc = self.policy.discharge
            if (
                dc is not None
                and self.state.phase is Phase.POST
                and not session.discharge_checked
                and session.stop_t is not None
            ):
                due = min(due, session.stop_t + dc.after_stop_s)
        g = self.policy.general
        for alarm in self.state.active.values():
            if (
                alarm.priority is Priority.HIGH
                and not alarm.acknowledged
                and alarm.level < g.escalation_levels
            ):
                due = min(due, alarm.activated_t + (alarm.level + 1) * g.escalation_interval_s)
        return due

    def _next_due(self) -> float:
        """The earliest time a timed alarm could become due, or inf."""
        due = self._next_due_fixed()
        session = self.state.session
        if session is not None:
            for rule in self.policy.no_data:
                if self.state.phase in rule.phases and rule.code not in self.state.active:
                    due = min(due, self._no_data_ref(rule, session) + rule.after_s)
        return due

    def _ticks_until(self, t: float, out: list[AlarmEvent]) -> None:
        """Process the ticks at whole seconds up to and including `t` where something is due.

        Everything due at or before the last moment was handled there, so the next tick that can
        change anything is the first whole second after that moment and at or after the next
        deadline; the ticks in between change nothing and are skipped, not simulated.
        """
        while True:
            due = self._next_due()
            if not math.isfinite(due):
                return
            tick = math.ceil(due)
            if math.isfinite(self.state.now):
                tick = max(tick, math.floor(self.state.now) + 1)
            if tick > t:
                return
            self.state.now = float(tick)
            self._timed(out)

    # ------------------------------------------------------------------ samples

    def _continuous_transition(
        self,
        rule: ContinuousRule,
        t: float,
        value: float,
        src: Param,
        *,
        due_on: bool,
        due_off: bool,
        out: list[AlarmEvent],
    ) -> None:
        alarm = self.state.active.get(rule.code)
        name = (
            f"HRE {fmt(value)} (from {src})"
            if rule.signal == HRE
            else f"{rule.signal} {fmt(value)}"
        )
        if alarm is None:
            if due_on and self.state.phase in rule.phases:
                self._new_alarm(
                    out,
                    t=t,
                    code=rule.code,
                    priority=rule.priority,
                    kind=rule.kind,
                    param=src.value,
                    value=value,
                    limit=rule.limit,
                    latching=rule.latching,
                    signal=rule.signal,
                    message=f"{name} for {fmt(rule.delay_s)} s",
                )
            return
        if due_on:
            alarm.condition, alarm.ended_t = True, None
        elif due_off:
            if alarm.condition:
                alarm.condition, alarm.ended_t = False, t
            # A latching alarm stays until acknowledged: the end of its condition is no state
            # change and no event (docs/ALARMS.md "States"); the active list shows it.
            if not alarm.latching or alarm.acknowledged:
                out.append(
                    self._clear(
                        rule.code,
                        t,
                        param=src.value,
                        value=value,
                        message=f"{name} back for {fmt(self._clear_after)} s",
                    )
                )

    # ------------------------------------------------------------------ determinations

    def _close_determination(self, out: list[AlarmEvent]) -> None:
        t = self.state.pending_t
        assert t is not None
        sys_ = self.state.pending.get(Param.NIBP_SYS, math.nan)
        dia = self.state.pending.get(Param.NIBP_DIA, math.nan)
        self.state.pending = {}
        self.state.pending_t = None
        # Reading 6: it counts only if both SYS and DIA are valid (MEAN is not used).
        if math.isfinite(sys_) and math.isfinite(dia):
            self._determination(t, sys_, dia, out)
        self._timed(out)

    def _determination(self, t: float, sys_: float, dia: float, out: list[AlarmEvent]) -> None:
        session = self.state.session
        self.state.latest[Param.NIBP_SYS.value] = sys_
        self.state.latest[Param.NIBP_DIA.value] = dia
        if session is None:
            return
        prev = session.determinations[-1] if session.determinations else None
        det = _Determination(t, sys_, dia, self.state.phase)
        session.determinations.append(det)
        od = self.policy.nibp_overdue
        if od is not None and od.code in self.state.active:
            out.append(self._clear(od.code, t, value=0.0, message="NIBP determination received"))
        bl = self.policy.baseline
        if bl.code in self.state.active:
            out.append(self._clear(bl.code, t, message="NIBP determination received"))
        for rule in self.policy.determination:
            if self.state.phase in rule.phases:
                self._determination_rule(rule, det, prev, session, out)
        dc = self.policy.discharge
        if dc is not None and self.state.phase is Phase.POST and session.discharge_checked:
            self._discharge_check(t, out)

    def _determination_rule(
        self,
        rule: DeterminationRule,
        det: _Determination,
        prev: _Determination | None,
        session: _Session,
        out: list[AlarmEvent],
    ) -> None:
        hit: tuple[DeterminationClause, str, float, float, float | None] | None = None
        for clause in rule.when:
            hit = self._clause(clause, rule, det, prev, session)
            if hit is not None:
                break
        alarm = self.state.active.get(rule.code)
        if hit is not None:
            clause, param, value, limit, median = hit
            if alarm is None:
                self._new_alarm(
                    out,
                    t=det.t,
                    code=rule.code,
                    priority=rule.priority,
                    kind=rule.kind,
                    param=param,
                    value=value,
                    limit=limit,
                    latching=rule.latching,
                    message=_bp_message(clause, det, param, median),
                )
            else:
                alarm.condition, alarm.ended_t = True, None
            return
        if alarm is not None:
            self._determination_ended(rule, alarm, det, out)

    def _determination_ended(
        self,
        rule: DeterminationRule,
        alarm: ActiveAlarm,
        det: _Determination,
        out: list[AlarmEvent],
    ) -> None:
        """A determination that no longer meets active `alarm`'s rule: clear it, or latch it.

        Latching and unacknowledged, it stays; the end of its condition is no event
        (docs/ALARMS.md "States"), only `condition` records it (the active list's `latched`).
        """
        if alarm.condition:
            alarm.condition, alarm.ended_t = False, det.t
        if alarm.latching and not alarm.acknowledged:
            return
        reading = det.sys if alarm.param == Param.NIBP_SYS else det.dia
        side = "SYS" if alarm.param == Param.NIBP_SYS else "DIA"
        median = None
        for clause in rule.when:
            if clause.hre_ratio is not None:
                median = self._hre_median(det.t, clause.hre_window_s)
        text = f"NIBP {side} {fmt(reading)}"
        if median is not None:
            text += f", median HRE {fmt(rule.when[0].hre_window_s)} s {fmt(median)}"
        out.append(self._clear(rule.code, det.t, value=reading, message=text))

    def _clause(
        self,
        clause: DeterminationClause,
        rule: DeterminationRule,
        det: _Determination,
        prev: _Determination | None,
        session: _Session,
    ) -> tuple[DeterminationClause, str, float, float, float | None] | None:
        """(clause, param, value, limit, median HRE) if `clause` holds at `det`, else None."""
        sys_thr, dia_thr = clause.sys, clause.dia
        if clause.relative:
            bl = session.baseline
            if bl is None or bl.sys0 is None or bl.dia0 is None:
                return None  # Reading 9: relative rules are off without SYS0/DIA0
            sys_thr = clause.sys_ratio * bl.sys0 if clause.sys_ratio is not None else None
            dia_thr = clause.dia_ratio * bl.dia0 if clause.dia_ratio is not None else None

        def crossed(d: _Determination) -> tuple[str, float, float] | None:
            if sys_thr is not None and d.sys >= sys_thr:
                return Param.NIBP_SYS.value, d.sys, sys_thr
            if dia_thr is not None and d.dia >= dia_thr:
                return Param.NIBP_DIA.value, d.dia, dia_thr
            return None

        now_hit = crossed(det)
        if now_hit is None:
            return None
        # Reading 7: the previous valid determination, itself taken in one of the rule's phases
        if clause.consecutive == 2 and (
            prev is None or prev.phase not in rule.phases or crossed(prev) is None
        ):
            return None
        median = None
        if clause.hre_ratio is not None:
            bl = session.baseline
            median = self._hre_median(det.t, clause.hre_window_s)
            if bl is None or bl.hr0 is None or median is None or median < clause.hre_ratio * bl.hr0:
                return None
        return clause, now_hit[0], now_hit[1], now_hit[2], median

    def _hre_median(self, t: float, window_s: float) -> float | None:
        # Reading 8: the window is inclusive, t - window <= ts <= t
        return _median(self._window(HRE, t - window_s, t))

    # ------------------------------------------------------------------ session steps

    def _session_event(self, t: float, event: SessionEvent, out: list[AlarmEvent]) -> None:
        # Reading 14: session events apply literally, whatever the current phase.
        if event is SessionEvent.SESSION_START:
            self.state.session = _Session(start=t, phase_start=t)
            self._set_phase(Phase.PRE, t, out)
        elif event is SessionEvent.INFUSION_START:
            if self.state.session is None:
                self.state.session = _Session(start=t, phase_start=t)
            self.state.session.baseline = self._take_baseline(t, self.state.session)
            self.state.session.phase_start = t
            self._set_phase(Phase.INFUSION, t, out)
            bl = self.state.session.baseline
            rule = self.policy.baseline
            if bl.pre_determinations < rule.min_determinations:
                self._new_alarm(
                    out,
                    t=t,
                    code=rule.code,
                    priority=rule.priority,
                    kind=AlarmKind.ADVISORY,
                    param=Param.NIBP_SYS.value,
                    value=float(bl.pre_determinations),
                    limit=float(rule.min_determinations),
                    latching=False,
                    message=f"only {bl.pre_determinations} pre determinations at infusion start",
                )
        elif event is SessionEvent.INFUSION_STOP:
            if self.state.session is None:
                self.state.session = _Session(start=t, phase_start=t)
            self.state.session.phase_start = t
            self.state.session.stop_t = t
            self.state.session.discharge_checked = False
            self._set_phase(Phase.POST, t, out)
            # Reading 10: the post clock restarts at infusion stop
            od = self.policy.nibp_overdue
            if od is not None and od.code in self.state.active:
                out.append(
                    self._clear(
                        od.code, t, value=0.0, message="infusion stopped: NIBP clock restarts"
                    )
                )
        elif event is SessionEvent.DISCHARGE:
            self._discharge(t, out)

    def _discharge(self, t: float, out: list[AlarmEvent]) -> None:
        self._set_phase(Phase.NONE, t, out)
        # Reading 14: no alarm of one patient carries into the next session, latched or not;
        # the bed's own conditions (a monitor unplugged, the ward link) are not the patient's
        # and stay with the daemon that watches them.
        for code in sorted(self.state.active, key=self._order.__getitem__):
            if code not in _BED_CONDITIONS:
                out.append(self._clear(code, t, message=f"{code}: patient discharged"))
        self.state.session = None

    def _set_phase(self, phase: Phase, t: float, out: list[AlarmEvent]) -> None:
        """Change phase; clear every active alarm whose phase set excludes the new one."""
        self.state.phase = phase
        for code in sorted(self.state.active, key=self._order.__getitem__):
            if phase not in self._phases_of(code):
                out.append(self._clear(code, t, message=f"phase {phase}: {code} does not apply"))

    def _phases_of(self, code: str) -> frozenset[Phase]:
        if code in SYSTEM_ALARM_CODES:
            return frozenset(Phase)
        rules: list[ContinuousRule | DeterminationRule | NoDataRule] = [
            *self.policy.continuous,
            *self.policy.determination,
            *self.policy.no_data,
        ]
        for rule in rules:
            if rule.code == code:
                return rule.phases
        if code == self.policy.baseline.code:
            return frozenset({Phase.INFUSION})
        if self.policy.discharge is not None and code == self.policy.discharge.code:
            return frozenset({Phase.POST})
        return _OVERDUE_PHASES

    def _take_baseline(self, t: float, session: _Session) -> Baseline:
        pre = [d for d in session.determinations if d.phase is Phase.PRE]
        lo = max(session.start, t - self.policy.baseline.window_s)
        return Baseline(
            t=t,
            sys0=_median([d.sys for d in pre]),
            dia0=_median([d.dia for d in pre]),
            hr0=_median(self._window(HRE, lo, t)),
            spo2_0=_median(self._window(Param.SPO2.value, lo, t)),
            pre_determinations=len(pre),
        )

    # ------------------------------------------------------------------ timed alarms

    def _timed(self, out: list[AlarmEvent]) -> None:
        """Checks due after every moment (Reading 2), in table order."""
        now = self.state.now
        session = self.state.session
        if session is not None:
            for rule in self.policy.no_data:
                if self.state.phase in rule.phases and rule.code not in self.state.active:
                    gap = now - self._no_data_ref(rule, session)
                    if gap >= rule.after_s:
                        prio = (
                            rule.priority_in_pre if self.state.phase is Phase.PRE else rule.priority
                        )
                        self._new_alarm(
                            out,
                            t=now,
                            code=rule.code,
                            priority=prio,
                            kind=AlarmKind.TECHNICAL,
                            param=_first(rule),
                            value=gap,
                            limit=rule.after_s,
                            latching=False,
                            message=f"no valid {_params_text(rule)} for {fmt(gap)} s",
                        )
            od = self.policy.nibp_overdue
            if (
                od is not None
                and self.state.phase in _OVERDUE_PHASES
                and od.code not in self.state.active
            ):
                gap = now - self._overdue_ref(session)
                if gap >= self._overdue_limit():
                    self._new_alarm(
                        out,
                        t=now,
                        code=od.code,
                        priority=od.priority,
                        kind=AlarmKind.TECHNICAL,
                        param=Param.NIBP_SYS.value,
                        value=gap,
                        limit=self._overdue_limit(),
                        latching=False,
                        message=f"no NIBP determination for {fmt(self._overdue_limit())} s",
                    )
            dc = self.policy.discharge
            if (
                dc is not None
                and self.state.phase is Phase.POST
                and session.stop_t is not None
                and not session.discharge_checked
                and now >= session.stop_t + dc.after_stop_s
            ):
                session.discharge_checked = True
                self._discharge_check(now, out)
        self._escalate(out)

    def _no_data_ref(self, rule: NoDataRule, session: _Session) -> float:
        """Reading 2: the later of the rule's last valid sample and the session start."""
        ref = session.start
        b = self._batch
        if b is not None and b.after_carry:
            # in time order the last valid row of any of the params is the latest of them
            valid = b.nd_valid[rule.code]
            i = int(valid.searchsorted(b.pos))
            if i:
                return max(ref, float(b.t[valid[i - 1]]))
        for p in rule.params:
            last = self.state.last_valid_t.get(p, -math.inf)
            idx = b.valid_rows.get(p) if b is not None else None
            if idx is not None:
                assert b is not None
                i = int(idx.searchsorted(b.pos))
                if i:
                    last = float(b.t[idx[i - 1]])
            ref = max(ref, last)
        return ref

    def _overdue_ref(self, session: _Session) -> float:
        last = session.determinations[-1].t if session.determinations else -math.inf
        return max(last, session.phase_start)

    def _overdue_limit(self) -> float:
        od = self.policy.nibp_overdue
        assert od is not None
        return od.infusion_s if self.state.phase is Phase.INFUSION else od.post_s

    def _discharge_check(self, t: float, out: list[AlarmEvent]) -> None:
        """Reading 11: vitals back within the band of the baseline."""
        dc = self.policy.discharge
        session = self.state.session
        assert dc is not None
        assert session is not None
        bl = session.baseline
        failing: tuple[str, float, float] | None = None
        checks: list[tuple[str, float | None, float | None]] = [
            (Param.NIBP_SYS.value, self._latest_det("sys"), bl.sys0 if bl else None),
            (Param.NIBP_DIA.value, self._latest_det("dia"), bl.dia0 if bl else None),
            (HRE, self._latest_of(HRE), bl.hr0 if bl else None),
        ]
        for name, x, x0 in checks:
            if x is None or x0 is None:
                continue  # a clause whose input is missing is skipped
            lo, hi = (1 - dc.band) * x0, (1 + dc.band) * x0
            if x < lo:
                failing = (name, x, lo)
                break
            if x > hi:
                failing = (name, x, hi)
                break
        if failing is None and bl is not None and bl.spo2_0 is not None:
            spo2 = self._latest_of(Param.SPO2.value)
            if spo2 is not None and spo2 < bl.spo2_0 - dc.spo2_drop:
                failing = (Param.SPO2.value, spo2, bl.spo2_0 - dc.spo2_drop)
        alarm = self.state.active.get(dc.code)
        if failing is not None:
            name, x, limit = failing
            if alarm is None:
                param = (
                    (Param.HR.value if self._hre_src() is Param.HR else Param.PR.value)
                    if name == HRE
                    else name
                )
                self._new_alarm(
                    out,
                    t=t,
                    code=dc.code,
                    priority=dc.priority,
                    kind=AlarmKind.ADVISORY,
                    param=param,
                    value=x,
                    limit=limit,
                    latching=False,
                    signal=name,
                    message=f"not back to baseline: {name} {fmt(x)} (limit {fmt(limit)})",
                )
        elif alarm is not None:
            out.append(self._clear(dc.code, t, message="vitals back within the baseline band"))

    def _latest_det(self, which: str) -> float | None:
        session = self.state.session
        if session is None or not session.determinations:
            return None
        d = session.determinations[-1]
        return d.sys if which == "sys" else d.dia

    def _escalate(self, out: list[AlarmEvent]) -> None:
        g = self.policy.general
        now = self.state.now
        for code in sorted(self.state.active, key=self._order.__getitem__):
            alarm = self.state.active[code]
            if alarm.priority is not Priority.HIGH or alarm.acknowledged:
                continue
            while (
                alarm.level < g.escalation_levels
                and now >= alarm.activated_t + (alarm.level + 1) * g.escalation_interval_s
            ):
                alarm.level += 1
                out.append(
                    self._event(
                        alarm,
                        AlarmState.ESCALATED,
                        now,
                        message=f"{code} not acknowledged: escalation level {alarm.level}",
                        value=self._reading(alarm),
                        level=alarm.level,
                    )
                )

    # ------------------------------------------------------------------ events

    def _raise(self, out: list[AlarmEvent], alarm: ActiveAlarm, t: float, *, message: str) -> None:
        """Make `alarm` active and announce it."""
        self.state.active[alarm.code] = alarm
        out.append(self._event(alarm, AlarmState.ACTIVE, t, message=message))

    def _new_alarm(  # noqa: PLR0913 (an alarm has this many fields)
        self,
        out: list[AlarmEvent],
        *,
        t: float,
        code: str,
        priority: Priority,
        kind: AlarmKind,
        param: str | None,
        value: float | None,
        limit: float | None,
        latching: bool,
        message: str,
        signal: str | None = None,
        condition: bool = True,
    ) -> None:
        """Raise an alarm at `t`; `condition`: whether its condition still holds."""
        alarm = ActiveAlarm(
            code=code,
            priority=priority,
            kind=kind,
            activated_t=t,
            param=param,
            value=value,
            limit=limit,
            latching=latching,
            condition=condition,
            signal=signal,
        )
        self._raise(out, alarm, t, message=message)

    def _reading(self, alarm: ActiveAlarm) -> float | None:
        """The alarm's latest reading, for informative fields of later events."""
        if alarm.signal is not None:
            latest = self._latest_of(alarm.signal)
            if latest is not None:
                return latest
        return alarm.value

    def _event(
        self,
        alarm: ActiveAlarm,
        state: AlarmState,
        t: float,
        *,
        message: str,
        param: str | None = None,
        value: float | None = None,
        level: int | None = None,
        user: str | None = None,
    ) -> AlarmEvent:
        return AlarmEvent(
            # A late live sample (stamped before a tick already processed) must not give an
            # event an earlier time than the ones before it; in replay t == now always.
            t=max(t, self.state.now),
            code=alarm.code,
            priority=alarm.priority,
            kind=alarm.kind,
            state=state,
            param=param if param is not None else alarm.param,
            value=value if value is not None else alarm.value,
            limit=alarm.limit,
            phase=self.state.phase,
            message=message,
            level=level,
            user=user,
        )

    def _clear(
        self,
        code: str,
        t: float,
        *,
        message: str,
        param: str | None = None,
        value: float | None = None,
    ) -> AlarmEvent:
        alarm = self.state.active.pop(code)
        if value is None:
            value = self._reading(alarm)
        return self._event(alarm, AlarmState.CLEARED, t, message=message, param=param, value=value)


_NIBP = (Param.NIBP_SYS, Param.NIBP_DIA, Param.NIBP_MEAN)
# System alarms about the bed rather than the session: a discharge does not clear them.
_BED_CONDITIONS = frozenset(a.value for a in SystemAlarm if a.of_bed)
_OVERDUE_PHASES = frozenset({Phase.INFUSION, Phase.POST})


def _extend_history(hist: deque[tuple[float, float]], s: _Stream, before: float) -> None:
    """Append the stream's valid samples at or after `before`; drop the older ones of `hist`."""
    pos = s.ok_since(before)
    hist.extend(zip(s.t[pos].tolist(), s.v[pos].tolist(), strict=True))
    _prune(hist, before)


def _prune(hist: deque[tuple[float, float]], before: float) -> None:
    while hist and hist[0][0] < before:
        hist.popleft()


def _params_text(rule: NoDataRule) -> str:
    return " or ".join(p.value for p in sorted(rule.params, key=list(Param).index))


def _first(rule: NoDataRule) -> str:
    return min(rule.params, key=list(Param).index).value


def _bp_message(
    clause: DeterminationClause, det: _Determination, param: str, median: float | None
) -> str:
    if clause.consecutive == 2 and not clause.relative:
        return f"BP {fmt(det.sys)}/{fmt(det.dia)} high on two consecutive determinations"
    is_sys = param == Param.NIBP_SYS
    text = f"NIBP {'SYS' if is_sys else 'DIA'} {fmt(det.sys if is_sys else det.dia)}"
    if median is not None:
        text += f", median HRE {fmt(clause.hre_window_s)} s {fmt(median)}"
    return text


# ---------------------------------------------------------------------- batches, with numpy

# Row codes of `Rows.what`: the parameters, then the session events.
_CODES: tuple[Param | SessionEvent, ...] = (*Param, *SessionEvent)
_CODE_OF: dict[Param | SessionEvent, int] = {w: i for i, w in enumerate(_CODES)}
_PARAM_LO = np.array([PHYSIOLOGICAL_RANGE[p][0] for p in Param] + [0.0] * len(SessionEvent))
_PARAM_HI = np.array([PHYSIOLOGICAL_RANGE[p][1] for p in Param] + [0.0] * len(SessionEvent))
# per row code: always stepped (a session step or a cuff row)
_STATIC = np.array([isinstance(w, SessionEvent) or w in _NIBP for w in _CODES])
_IS_NIBP = np.array([w in _NIBP for w in _CODES])


@dataclass(frozen=True)
class Rows:
    """A batch of rows as arrays: time, what (a code of `_CODES`), value, device validity."""

    t: np.ndarray
    what: np.ndarray
    value: np.ndarray
    valid: np.ndarray

    def __len__(self) -> int:
        return len(self.t)

    @classmethod
    def of(cls, rows: Iterable[tuple[float, Param | SessionEvent, float, bool]]) -> Rows:
        """Rows from (t, what, value, valid) tuples."""
        ts, ws, vs, oks = [], [], [], []
        for t, what, value, valid in rows:
            ts.append(t)
            ws.append(_CODE_OF[what])
            vs.append(value)
            oks.append(valid)
        return cls(
            t=np.asarray(ts, dtype=np.float64),
            what=np.asarray(ws, dtype=np.int8),
            value=np.asarray(vs, dtype=np.float64),
            valid=np.asarray(oks, dtype=bool),
        )

    @functools.cached_property
    def in_range(self) -> np.ndarray:
        """Values inside the physiological range of their parameter (docs/ALARMS.md)."""
        with np.errstate(invalid="ignore"):
            # `take` gathers from a small table several times faster than fancy indexing
            inside: np.ndarray = (self.value >= _PARAM_LO.take(self.what)) & (
                self.value <= _PARAM_HI.take(self.what)
            )
        return inside


def _after(idx: np.ndarray, k: int, default: int) -> int:
    """The first value of the sorted row indices `idx` that is >= k, else `default`."""
    i = int(idx.searchsorted(k))
    return int(idx[i]) if i < len(idx) else default


@dataclass(eq=False)
class _Stream:
    """One signal's samples inside a batch; `rows` are their indices in the batch."""

    rows: np.ndarray
    t: np.ndarray
    v: np.ndarray
    ok: np.ndarray
    src: np.ndarray
    broken: np.ndarray  # a gap over `run_gap_s` before this sample breaks any run
    ordered: bool  # times never go back (always in replay; live rows may come late)

    @classmethod
    def of(
        cls,
        rows: np.ndarray,
        *,
        t: np.ndarray,
        v: np.ndarray,
        ok: np.ndarray,
        src: np.ndarray,
        last_t: float | None,
        gap: float,
    ) -> _Stream:
        m = len(t)
        broken = np.empty(m, dtype=bool)
        ordered = True
        if m:
            broken[0] = last_t is not None and t[0] - last_t > gap
            step = np.diff(t)
            np.greater(step, gap, out=broken[1:])
            ordered = not bool((step < 0).any())
        return cls(rows, t, v, ok, src, broken, ordered)

    def at(self, row: int) -> int:
        """Position of batch row `row` in the stream, or -1 if it is not one of its samples."""
        p = int(self.rows.searchsorted(row))
        return p if p < len(self.rows) and int(self.rows[p]) == row else -1

    def last_ok_before(self, row: int) -> int:
        """Position of the last valid sample on a row before `row`, or -1."""
        p = int(self.rows.searchsorted(row))  # samples before position p are before `row`
        # the last sample is valid as a rule: look back a little before looking at them all
        for lo in (max(p - 64, 0), 0):
            hit = np.flatnonzero(self.ok[lo:p])
            if len(hit):
                return lo + int(hit[-1])
        return -1

    def ok_window(self, lo: float, hi: float, row: int) -> np.ndarray:
        """Positions of the valid samples before `row` with lo <= t <= hi."""
        end = int(self.rows.searchsorted(row))
        if self.ordered:
            i = int(self.t[:end].searchsorted(lo, side="left"))
            j = int(self.t[:end].searchsorted(hi, side="right"))
            return i + np.flatnonzero(self.ok[i:j])
        ts = self.t[:end]
        return np.flatnonzero(self.ok[:end] & (ts >= lo) & (ts <= hi))

    def ok_since(self, before: float) -> np.ndarray:
        """Positions of the valid samples at or after `before`."""
        if self.ordered:
            i = int(self.t.searchsorted(before, side="left"))
            return i + np.flatnonzero(self.ok[i:])
        return np.flatnonzero(self.ok & (self.t >= before))


@dataclass(eq=False)
class _Spans:
    """A set of stream positions as sorted disjoint spans [lo, hi), with their batch rows."""

    lo: np.ndarray
    hi: np.ndarray
    row_lo: np.ndarray  # the row of the first position of each span
    row_hi: np.ndarray  # the row of the last one
    memo: tuple[int, int] = (0, -1)  # (k, first row at or after k) last asked

    @classmethod
    def of(cls, s: _Stream, lo: np.ndarray, hi: np.ndarray) -> _Spans:
        return cls(lo, hi, s.rows[lo], s.rows[hi - 1])

    def has(self, p: int) -> bool:
        i = int(self.hi.searchsorted(p, side="right"))
        return i < len(self.hi) and int(self.lo[i]) <= p

    def last(self) -> int:
        """The last position of the set, or -1."""
        return int(self.hi[-1]) - 1 if len(self.hi) else -1

    def next_row(self, s: _Stream, k: int, default: int) -> int:
        """The first row at or after `k` of a position in the set, else `default`."""
        # the stepping asks with k growing: an answer at or after k still stands
        asked, found = self.memo
        if asked > k or found < k:
            found = _NONE
            i = int(self.row_hi.searchsorted(k))
            if i < len(self.row_hi):
                lo = int(self.row_lo[i])
                found = lo if lo >= k else int(s.rows[s.rows.searchsorted(k)])
            self.memo = (k, found)
        return min(found, default)


_NONE = sys.maxsize  # "no such row", larger than every row


@dataclass(eq=False)
class _Due:
    """One continuous rule over a batch: where it is due to raise (`on`) and to clear (`off`).

    `on` holds the samples where the condition has held for `delay_s`, `off` those where it
    has not held for `clear_after_s` ("Run semantics", Reading 4); `hold_start`, `off_start`
    are the runs open at the batch's last sample, carried into the next batch.
    """

    on: _Spans
    off: _Spans
    hold_start: float | None
    off_start: float | None


@dataclass(eq=False)
class _Batch:
    """A batch as columns: each signal's samples and each continuous rule's runs, at once.

    Built once per `AlarmEngine.rows` call from the state the engine carries; `pos` is the
    row the engine's stepping has reached (rows before it are done).
    """

    n: int
    t: np.ndarray
    what: np.ndarray
    value: np.ndarray
    ok: np.ndarray
    tmax: np.ndarray  # running maximum of t (live rows may come slightly out of order)
    ordered: bool
    static: np.ndarray  # rows that are always stepped: session steps and NIBP rows
    streams: dict[str, _Stream]
    signals_of: dict[Param, tuple[str, ...]]
    due: dict[str, _Due]
    valid_rows: dict[Param, np.ndarray]  # rows of valid samples per continuous parameter
    nd_valid: dict[str, np.ndarray]  # per no-data rule: rows of valid samples of its params
    nd_late: dict[str, np.ndarray]  # per no-data rule: rows that long after the last valid one
    after_carry: bool  # in time order, and not before any last valid time carried in
    pos: int = 0
    # in time order: the first row at or after a time, per time asked (the stepping asks for
    # the same deadlines row after row)
    at_time: dict[float, int] = field(default_factory=dict)

    def first_at_or_after(self, x: float, k: int) -> int:
        """The first row at or after `k` whose time is at least `x`, else `n`."""
        if self.ordered:
            row = self.at_time.get(x)
            if row is None:
                row = self.at_time[x] = int(self.t.searchsorted(x, side="left"))
            return max(k, row)
        hit = np.flatnonzero(self.t[k:] >= x)
        return k + int(hit[0]) if len(hit) else self.n


_CONTINUOUS = tuple(p for p in Param if p not in _NIBP)
_HOLDS, _OFF = np.int8(2), np.int8(1)  # sample states of `_due`; 0 is an invalid sample


def _due(s: _Stream, rule: ContinuousRule, run: _Run, *, clear_after: float) -> _Due:
    """Run semantics over a stream, as spans: where the rule is due to raise and to clear.

    Each sample is invalid, holding or not holding; a run (of holding or of not holding)
    begins where the state changes or a gap over `run_gap_s` comes before the sample, and an
    invalid sample breaks both kinds (Reading 4). Runs are few, so the work per sample is a
    few comparisons; the rest is per run. `run` carries the runs of the batch before.
    """
    m = len(s.t)
    if m == 0:
        none = _Spans.of(s, starts := np.empty(0, np.int64), starts)
        return _Due(none, none, run.hold_start, run.off_start)
    with np.errstate(invalid="ignore"):
        state = s.ok.view(np.int8) + (OPS[rule.op](s.v, rule.limit) & s.ok)
    new = np.empty(m, dtype=bool)
    new[0] = True
    np.not_equal(state[1:], state[:-1], out=new[1:])
    new |= s.broken
    starts = np.flatnonzero(new)
    ends = np.empty_like(starts)
    ends[:-1] = starts[1:]
    ends[-1] = m
    kinds = state[starts]
    since = s.t[starts]
    # the batch's first run goes on from the last batch's unless a gap broke it
    carried = {int(_HOLDS): run.hold_start, int(_OFF): run.off_start}.get(int(kinds[0]))
    if carried is not None and not s.broken[0]:
        since[0] = carried
    on = _due_spans(s, kinds == _HOLDS, starts, ends, since, rule.delay_s)
    off = _due_spans(s, kinds == _OFF, starts, ends, since, clear_after)
    last = int(kinds[-1])
    return _Due(
        on,
        off,
        float(since[-1]) if last == _HOLDS else None,
        float(since[-1]) if last == _OFF else None,
    )


def _due_spans(
    s: _Stream,
    sel: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    since: np.ndarray,
    after: float,
) -> _Spans:
    """The samples of the runs `sel` at which `t - since >= after`, as spans.

    In time order the samples of a run that qualify are a tail of it, found by a binary
    search (then checked with the exact subtraction, as `hold_start + delay` may round); rows
    out of time order (live) are compared one by one.
    """
    lo, hi, since = starts[sel], ends[sel], since[sel]
    t = s.t
    if not s.ordered:
        mask = np.zeros(len(t), dtype=bool)
        for a, b, t0 in zip(lo.tolist(), hi.tolist(), since.tolist(), strict=True):
            mask[a:b] = t[a:b] - t0 >= after
        edge = np.diff(mask.view(np.int8), prepend=np.int8(0), append=np.int8(0))
        return _Spans.of(s, np.flatnonzero(edge == 1), np.flatnonzero(edge == -1))
    first = np.maximum(lo, t.searchsorted(since + after, side="left"))
    # the exact test at the edge: the first qualifying sample and the one before it
    inside = first < hi
    late = inside & (t[np.minimum(first, len(t) - 1)] - since < after)
    early = (first > lo) & (t[np.maximum(first - 1, 0)] - since >= after)
    for i in np.flatnonzero(late | early).tolist():
        a, b = int(lo[i]), int(hi[i])
        hit = np.flatnonzero(t[a:b] - since[i] >= after)
        first[i] = a + int(hit[0]) if len(hit) else b
    keep = first < hi
    return _Spans.of(s, first[keep], hi[keep])


def _late_rows(
    t: np.ndarray, tmax: np.ndarray, valid: np.ndarray, carry: float, after: float
) -> np.ndarray:
    """Rows at least `after` later than the last valid row strictly before them.

    Such rows lie in the gaps between valid rows that span `after` (few: data lost), so only
    those gaps are looked at, each with the running maximum of time bounding what is in it.
    """
    n = len(t)
    tv = t[valid]
    reach = tv if tmax is t else tmax[valid]  # the latest time up to each valid row
    # gap (first row, last row, reference time): after each valid row up to the next one, and
    # before the first one from the carried time, and after the last one to the batch's end
    gaps = [
        (int(valid[i]) + 1, int(valid[i + 1]), float(tv[i]))
        for i in np.flatnonzero(reach[1:] - tv[:-1] >= after).tolist()
    ]
    first = int(valid[0]) if len(valid) else n - 1
    if tmax[first] - carry >= after:
        gaps.insert(0, (0, first, carry))
    if len(valid) and int(valid[-1]) < n - 1 and tmax[n - 1] - tv[-1] >= after:
        gaps.append((int(valid[-1]) + 1, n - 1, float(tv[-1])))
    found = [a + np.flatnonzero(t[a : b + 1] - r >= after) for a, b, r in gaps]
    return np.concatenate(found) if found else np.empty(0, dtype=np.int64)
