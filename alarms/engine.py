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

import functools
import math
import statistics
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from alarms.policy import (
    OPS,
    ContinuousRule,
    DeterminationClause,
    DeterminationRule,
    NoDataRule,
    Policy,
)
from monitor.vocabulary import (
    PHYSIOLOGICAL_RANGE,
    AlarmEvent,
    AlarmKind,
    AlarmState,
    Param,
    Phase,
    Priority,
    SessionEvent,
    in_range,
)

__all__ = ["SYSTEM_ALARMS", "ActiveAlarm", "AlarmEngine", "Baseline", "Rows"]

HRE = "HRE"

# Technical alarms about the bedside system itself, not the patient: the daemon sees their
# conditions (a monitor unplugged, the ward broker unreachable), the engine keeps them with the
# policy's alarms so that acknowledgement, `alarms/active` and the outbox treat them alike.
# Medium, as a lost data source is in docs/ALARMS.md (`SPO2_NO_DATA`); in every phase, because a
# monitor unplugged before a session opens is worth fixing before it does.
SYSTEM_ALARMS: dict[str, tuple[Priority, AlarmKind]] = {
    "DEVICE_DISCONNECTED": (Priority.MEDIUM, AlarmKind.TECHNICAL),
    "WARD_LINK_DOWN": (Priority.MEDIUM, AlarmKind.TECHNICAL),
    # the daemon was not running for a while during a session (a crash, a power cut): latched
    # until a nurse acknowledges that the bed went unwatched (issue 4, recovery)
    "MONITORING_GAP": (Priority.MEDIUM, AlarmKind.TECHNICAL),
    # docs/PROTOCOL.md step 3: the infusion takes 40 min; past 45 min the pump or the plan is off
    "INFUSION_LONG": (Priority.LOW, AlarmKind.ADVISORY),
}


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
        self.phase = Phase.NONE
        self.session: _Session | None = None
        self.active: dict[str, ActiveAlarm] = {}
        self._order = {code: i for i, code in enumerate([*policy.codes(), *SYSTEM_ALARMS])}
        self._now = -math.inf
        self._runs = {r.code: _Run() for r in policy.continuous}
        self._signal_last_t: dict[str, float] = {}
        self._latest: dict[str, float] = {}  # latest valid value per signal / param
        self._last_valid_hr: tuple[float, float] | None = None
        self._last_valid_t: dict[Param, float] = {}
        self._last_hre_src = Param.HR
        # valid HRE and SpO2 samples for the baseline and surge windows (Reading 8)
        keep = max(
            [policy.baseline.window_s]
            + [c.hre_window_s for r in policy.determination for c in r.when if c.hre_ratio]
        )
        self._keep_s = keep + 1.0
        self._hre_hist: deque[tuple[float, float]] = deque()
        self._spo2_hist: deque[tuple[float, float]] = deque()
        self._pending_nibp: dict[Param, float] = {}
        self._pending_nibp_t: float | None = None
        self._signals = sorted({r.signal for r in policy.continuous})

    # ------------------------------------------------------------------ public interface

    @property
    def now(self) -> float:
        """Time of the last moment processed."""
        return self._now

    @property
    def baseline(self) -> Baseline | None:
        """The current session's baseline, once the infusion started."""
        return self.session.baseline if self.session else None

    def row(
        self, t: float, what: Param | SessionEvent, value: float, *, valid: bool = True
    ) -> list[AlarmEvent]:
        """Process one row (after the ticks due at or before `t`); return the events it caused.

        `value` is NaN for a missing value; `valid` is the device's verdict (the physiological
        range is checked here). Rows must come in time order.
        """
        out: list[AlarmEvent] = []
        if self._pending_nibp_t is not None and (
            t != self._pending_nibp_t or not isinstance(what, Param) or what not in _NIBP
        ):
            self._close_determination(out)
        self._ticks_until(t, out)
        self._now = max(self._now, t)
        if isinstance(what, SessionEvent):
            self._session_event(t, what, out)
        elif what in _NIBP:
            self._pending_nibp_t = t
            self._pending_nibp[what] = value if valid and in_range(what, value) else math.nan
            if len(self._pending_nibp) == len(_NIBP):
                self._close_determination(out)
            return out
        else:
            self._sample(t, what, value, ok=valid and in_range(what, value), out=out)
        self._timed(out)
        return out

    def tick(self, now: float) -> list[AlarmEvent]:
        """Run the 1 s ticks due up to `now` (live mode); return their events."""
        out: list[AlarmEvent] = []
        if self._pending_nibp_t is not None and now > self._pending_nibp_t:
            self._close_determination(out)
        self._ticks_until(now, out)
        return out

    def flush(self) -> list[AlarmEvent]:
        """Close a determination still waiting for rows (end of a recording)."""
        out: list[AlarmEvent] = []
        if self._pending_nibp_t is not None:
            self._close_determination(out)
        return out

    def acknowledge(self, code: str, t: float, user: str | None = None) -> list[AlarmEvent]:
        """Acknowledge an active alarm ("Alarm system behaviour").

        A latched alarm whose condition has ended clears at once; otherwise the alarm stays,
        silenced, until it clears. Acknowledging twice, or an alarm that is not active, changes
        nothing and returns no event.
        """
        alarm = self.active.get(code)
        if alarm is None or alarm.acknowledged:
            return []
        alarm.acknowledged = True
        t = max(t, self._now)
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
        latching: bool = False,
    ) -> list[AlarmEvent]:
        """Raise or clear a system alarm (`SYSTEM_ALARMS`) whose condition the caller watches.

        Raising an active one, or clearing one that is not, changes nothing and returns no
        event. Not `latching`, a system alarm clears when its condition ends,
        acknowledged or not; `latching`, it records an occurrence that is already over (its
        condition ends at once) and stays until acknowledged. Call `tick(t)` first in live use,
        so events stay in time order.

        Raises:
            KeyError: `code` is not a system alarm.
        """
        priority, kind = SYSTEM_ALARMS[code]
        t = max(t, self._now)
        out: list[AlarmEvent] = []
        if active and latching and code in self.active:
            # a new occurrence of a latched condition (a second gap) is announced on its own,
            # not hidden behind the first, acknowledged or not
            out.append(self._clear(code, t, message=f"{code} superseded by a new occurrence"))
        elif active == (code in self.active):
            return []
        if not active:
            if self.active[code].latching:
                return []  # a latched occurrence ends with its acknowledgement
            return [self._clear(code, t, message=message)]
        alarm = ActiveAlarm(
            code=code,
            priority=priority,
            kind=kind,
            activated_t=t,
            param=param,
            value=value,
            limit=None,
            latching=latching,
            condition=not latching,
        )
        self._raise(out, alarm, t, message=message)
        return out

    # ------------------------------------------------------------------ batches, with numpy

    def rows(self, batch: Rows) -> list[AlarmEvent]:
        """Process a batch of rows in order; the same events as `row` on each, only faster.

        Stretches of continuous samples in which nothing changes state (no alarm becomes active
        or clears, no timed alarm falls due) are applied at once with numpy; every other row
        goes through `row`. The live daemon and `vigil replay` both come through here.
        """
        out: list[AlarmEvent] = []
        n = len(batch)
        plain = batch.continuous
        # index of the next row that is not a continuous sample, for every row
        boundary = np.flatnonzero(~plain)
        window = _MIN_VECTOR
        i = 0
        while i < n:
            if plain[i] and self._pending_nibp_t is None:
                nxt = np.searchsorted(boundary, i)
                stop = int(boundary[nxt]) if nxt < len(boundary) else n
                stop = min(stop, i + window)
                if stop - i >= _MIN_VECTOR:
                    j = self._quiet_prefix(batch, i, stop)
                    # grow while stretches stay quiet; after an event, shrink but do not start over
                    window = (
                        min(window * 2, _MAX_WINDOW) if j == stop else max(_MIN_VECTOR, window // 4)
                    )
                    if j > i:
                        i = j
                        continue
            what: Param | SessionEvent = _CODES[int(batch.what[i])]
            out += self.row(
                float(batch.t[i]), what, float(batch.value[i]), valid=bool(batch.valid[i])
            )
            i += 1
        return out

    def _quiet_prefix(self, b: Rows, i: int, stop: int) -> int:
        """Apply rows [i, j) of continuous samples at once, for the largest quiet j <= stop.

        Quiet: at no row and no tick in the stretch would anything change but run state,
        histories and latest values; so applying them together is exactly `row` one by one.
        Returns j (j == i when the first row itself is not quiet).
        """
        t = b.t[i:stop]
        what = b.what[i:stop]
        value = b.value[i:stop]
        ok = b.valid[i:stop] & b.in_range[i:stop]
        j = len(t)
        # timed alarms with fixed deadlines (escalation, NIBP overdue, discharge): a row at or
        # after the deadline, or a tick before it, would find them due
        due = self._next_due_fixed()
        if math.isfinite(due):
            j = min(j, int(np.searchsorted(t, due, side="left")))
        j = self._no_data_limit(t, what, ok, j)
        if j == 0:
            return i
        t, what, value, ok = t[:j], what[:j], value[:j], ok[:j]
        # signals: HRE from HR/PR rows (Reading 5), and each continuous parameter
        streams = self._streams(t, what, value, ok)
        pending: list[_Pending] = []
        for rule in self.policy.continuous:
            stream = streams.get(rule.signal)
            if stream is None or not len(stream.t):
                continue
            alarm = self.active.get(rule.code)
            due_on, due_off, hold_start, off_start = _runs(
                stream,
                rule,
                self._runs[rule.code],
                clear_after=self._clear_after,
                need_off=alarm is not None,
            )
            if alarm is None:
                hit = np.flatnonzero(due_on) if self.phase in rule.phases else np.empty(0, np.int64)
            elif not alarm.latching or alarm.acknowledged:
                hit = np.flatnonzero(due_off)
            else:
                hit = np.empty(0, np.int64)
            if len(hit):
                j = min(j, int(stream.rows[hit[0]]))
            pending.append((rule, stream, due_on, due_off, (hold_start, off_start)))
        if j == 0:
            return i
        self._apply_quiet(t[:j], what[:j], value[:j], ok[:j], streams, pending, j)
        return i + j

    def _no_data_limit(self, t: np.ndarray, what: np.ndarray, ok: np.ndarray, j: int) -> int:
        """The first row (< j) at which, or before which, a no-data alarm would change."""
        session = self.session
        if session is None:
            return j
        for nd in self.policy.no_data:
            if self.phase not in nd.phases:
                continue
            valid_rows = np.zeros(len(what), dtype=bool)
            for param in nd.params:
                valid_rows |= what == _CODE_OF[param]
            valid_rows &= ok
            if nd.code in self.active:
                # it clears at the next valid sample of its parameters
                hit = np.flatnonzero(valid_rows[:j])
                if len(hit):
                    j = int(hit[0])
                continue
            ref = self._no_data_ref(nd, session)
            # a tick before a row, or the row's own check, sees at most the row's time minus
            # the last valid time before it
            before = np.concatenate(([ref], _ffill_values(t, valid_rows, ref)[:-1]))
            late = np.flatnonzero(t[:j] - before[:j] >= nd.after_s)
            if len(late):
                j = int(late[0])
        return j

    def _next_due_fixed(self) -> float:
        """`_next_due` without the no-data deadlines (those move with the data)."""
        due = math.inf
        session = self.session
        if session is not None:
            od = self.policy.nibp_overdue
            if od is not None and od.code not in self.active and self.phase in _OVERDUE_PHASES:
                due = min(due, self._overdue_ref(session) + self._overdue_limit())
            dc = self.policy.discharge
            if (
                dc is not None
                and self.phase is Phase.POST
                and not session.discharge_checked
                and session.stop_t is not None
            ):
                due = min(due, session.stop_t + dc.after_stop_s)
        g = self.policy.general
        for alarm in self.active.values():
            if (
                alarm.priority is Priority.HIGH
                and not alarm.acknowledged
                and alarm.level < g.escalation_levels
            ):
                due = min(due, alarm.activated_t + (alarm.level + 1) * g.escalation_interval_s)
        return due

    def _streams(
        self, t: np.ndarray, what: np.ndarray, value: np.ndarray, ok: np.ndarray
    ) -> dict[str, _Stream]:
        out: dict[str, _Stream] = {}
        hr_code, pr_code = _CODE_OF[Param.HR], _CODE_OF[Param.PR]
        beat = np.flatnonzero((what == hr_code) | (what == pr_code))
        if len(beat):
            bt, bw, bv, bok = t[beat], what[beat], value[beat], ok[beat]
            hr_valid = (bw == hr_code) & bok
            last = self._last_valid_hr
            idx = np.where(hr_valid, np.arange(len(bt)), -1)
            np.maximum.accumulate(idx, out=idx)
            seen = idx >= 0
            safe = np.maximum(idx, 0)
            lvt = np.where(seen, bt[safe], last[0] if last else math.nan)
            lvv = np.where(seen, bv[safe], last[1] if last else math.nan)
            from_hr = ~np.isnan(lvt) & (bt - lvt <= self._hold)
            out[HRE] = _Stream(
                rows=beat,
                t=bt,
                v=np.where(from_hr, lvv, bv),
                ok=from_hr | bok,
                src=np.where(from_hr, hr_code, bw),
                broken=self._broken(HRE, bt),
            )
        for signal in self._signals:
            if signal == HRE:
                continue
            code = _CODE_OF[Param(signal)]
            rows = np.flatnonzero(what == code)
            out[signal] = _Stream(
                rows=rows,
                t=t[rows],
                v=value[rows],
                ok=ok[rows],
                src=what[rows],
                broken=self._broken(signal, t[rows]),
            )
        return out

    def _broken(self, signal: str, t: np.ndarray) -> np.ndarray:
        """Whether a gap over `run_gap_s` comes before each sample ("Run semantics")."""
        broken = np.empty(len(t), dtype=bool)
        if len(t):
            last_t = self._signal_last_t.get(signal)
            broken[0] = last_t is not None and t[0] - last_t > self._gap
            broken[1:] = np.diff(t) > self._gap
        return broken

    def _apply_quiet(
        self,
        t: np.ndarray,
        what: np.ndarray,
        value: np.ndarray,
        ok: np.ndarray,
        streams: dict[str, _Stream],
        pending: list[_Pending],
        j: int,
    ) -> None:
        """Set the state the rows [0, j) leave behind (they caused no event)."""
        self._apply_params(t, what, value, ok)
        self._apply_signals(t, streams, pending, j)
        self._now = max(self._now, float(t[-1]))

    def _apply_params(
        self, t: np.ndarray, what: np.ndarray, value: np.ndarray, ok: np.ndarray
    ) -> None:
        for code in np.unique(what):
            param = _CODES[int(code)]
            assert isinstance(param, Param)
            hit = np.flatnonzero((what == code) & ok)
            if len(hit):
                k = int(hit[-1])
                self._last_valid_t[param] = float(t[k])
                self._latest[param] = float(value[k])
                if param is Param.HR:
                    self._last_valid_hr = (float(t[k]), float(value[k]))
            if param is Param.SPO2:
                sel = (what == code) & ok
                _extend_history(self._spo2_hist, t[sel], value[sel], float(t[-1]) - self._keep_s)

    def _apply_signals(
        self,
        t: np.ndarray,
        streams: dict[str, _Stream],
        pending: list[_Pending],
        j: int,
    ) -> None:
        hre = streams.get(HRE)
        if hre is not None:
            keep = hre.rows < j
            ht, hv, hok, hsrc = hre.t[keep], hre.v[keep], hre.ok[keep], hre.src[keep]
            good = np.flatnonzero(hok)
            if len(good):
                k = int(good[-1])
                self._latest[HRE] = float(hv[k])
                src = _CODES[int(hsrc[k])]
                assert isinstance(src, Param)
                self._last_hre_src = src
                _extend_history(self._hre_hist, ht[good], hv[good], float(t[-1]) - self._keep_s)
        for signal, stream in streams.items():
            keep = stream.rows < j
            if keep.any():
                self._signal_last_t[signal] = float(stream.t[keep][-1])
        for rule, stream, due_on, due_off, starts in pending:
            keep = stream.rows < j
            if not keep.any():
                continue
            last = int(np.flatnonzero(keep)[-1])
            run = self._runs[rule.code]
            hs, os_ = starts[0][last], starts[1][last]
            run.hold_start = None if math.isnan(hs) else float(hs)
            run.off_start = None if math.isnan(os_) else float(os_)
            alarm = self.active.get(rule.code)
            if alarm is not None:
                decisive = np.flatnonzero((due_on | due_off)[keep])
                if len(decisive):
                    alarm.condition = bool(due_on[keep][decisive[-1]])

    # ------------------------------------------------------------------ time

    def _next_due(self) -> float:
        """The earliest time a timed alarm could become due, or inf."""
        due = self._next_due_fixed()
        session = self.session
        if session is not None:
            for rule in self.policy.no_data:
                if self.phase in rule.phases and rule.code not in self.active:
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
            if math.isfinite(self._now):
                tick = max(tick, math.floor(self._now) + 1)
            if tick > t:
                return
            self._now = float(tick)
            self._timed(out)

    # ------------------------------------------------------------------ samples

    def _sample(
        self, t: float, param: Param, value: float, *, ok: bool, out: list[AlarmEvent]
    ) -> None:
        if ok:
            self._last_valid_t[param] = t
            self._latest[param] = value
            for rule in self.policy.no_data:
                if param in rule.params and rule.code in self.active:
                    out.append(
                        self._clear(
                            rule.code, t, value=0.0, message=f"{_params_text(rule)} data back"
                        )
                    )
        if param is Param.SPO2 and ok:
            self._spo2_hist.append((t, value))
            _prune(self._spo2_hist, t - self._keep_s)
        if param in (Param.HR, Param.PR):
            hre, hre_ok, src = self._hre(t, param, value, ok=ok)
            if hre_ok:
                self._latest[HRE] = hre
                self._last_hre_src = src
                self._hre_hist.append((t, hre))
                _prune(self._hre_hist, t - self._keep_s)
            self._signal(HRE, t, hre, ok=hre_ok, src=src, out=out)
        if param.value in self._signals:
            self._signal(param.value, t, value, ok=ok, src=param, out=out)

    def _hre(self, t: float, param: Param, value: float, *, ok: bool) -> tuple[float, bool, Param]:
        """Effective heart rate at an HR or PR row (Reading 5)."""
        if param is Param.HR and ok:
            self._last_valid_hr = (t, value)
        last = self._last_valid_hr
        if last is not None and t - last[0] <= self._hold:
            return last[1], True, Param.HR
        return value, ok, param

    def _signal(
        self, signal: str, t: float, value: float, *, ok: bool, src: Param, out: list[AlarmEvent]
    ) -> None:
        """Advance every continuous rule watching `signal` by one sample ("Run semantics")."""
        last_t = self._signal_last_t.get(signal)
        broken = last_t is not None and t - last_t > self._gap
        self._signal_last_t[signal] = t
        for rule in self.policy.continuous:
            if rule.signal != signal:
                continue
            run = self._runs[rule.code]
            holds = ok and OPS[rule.op](value, rule.limit)
            if holds:
                run.off_start = None
                if run.hold_start is None or broken:
                    run.hold_start = t
            elif ok:
                run.hold_start = None
                if run.off_start is None or broken:
                    run.off_start = t
            else:
                # an invalid sample breaks both kinds of run
                run.hold_start = run.off_start = None
            due_on = run.hold_start is not None and t - run.hold_start >= rule.delay_s
            due_off = run.off_start is not None and t - run.off_start >= self._clear_after
            self._continuous_transition(
                rule, t, value, src, due_on=due_on, due_off=due_off, out=out
            )

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
        alarm = self.active.get(rule.code)
        name = (
            f"HRE {fmt(value)} (from {src})"
            if rule.signal == HRE
            else f"{rule.signal} {fmt(value)}"
        )
        if alarm is None:
            if due_on and self.phase in rule.phases:
                self._raise(
                    out,
                    ActiveAlarm(
                        code=rule.code,
                        priority=rule.priority,
                        kind=rule.kind,
                        activated_t=t,
                        param=src.value,
                        value=value,
                        limit=rule.limit,
                        latching=rule.latching,
                        signal=rule.signal,
                    ),
                    t,
                    message=f"{name} for {fmt(rule.delay_s)} s",
                )
            return
        if due_on:
            alarm.condition = True
        elif due_off:
            alarm.condition = False
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
        t = self._pending_nibp_t
        assert t is not None
        sys_ = self._pending_nibp.get(Param.NIBP_SYS, math.nan)
        dia = self._pending_nibp.get(Param.NIBP_DIA, math.nan)
        self._pending_nibp = {}
        self._pending_nibp_t = None
        # Reading 6: it counts only if both SYS and DIA are valid (MEAN is not used).
        if math.isfinite(sys_) and math.isfinite(dia):
            self._determination(t, sys_, dia, out)
        self._timed(out)

    def _determination(self, t: float, sys_: float, dia: float, out: list[AlarmEvent]) -> None:
        session = self.session
        self._latest[Param.NIBP_SYS.value] = sys_
        self._latest[Param.NIBP_DIA.value] = dia
        if session is None:
            return
        prev = session.determinations[-1] if session.determinations else None
        det = _Determination(t, sys_, dia, self.phase)
        session.determinations.append(det)
        od = self.policy.nibp_overdue
        if od is not None and od.code in self.active:
            out.append(self._clear(od.code, t, value=0.0, message="NIBP determination received"))
        bl = self.policy.baseline
        if bl.code in self.active:
            out.append(self._clear(bl.code, t, message="NIBP determination received"))
        for rule in self.policy.determination:
            if self.phase in rule.phases:
                self._determination_rule(rule, det, prev, session, out)
        dc = self.policy.discharge
        if dc is not None and self.phase is Phase.POST and session.discharge_checked:
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
        alarm = self.active.get(rule.code)
        if hit is not None:
            clause, param, value, limit, median = hit
            if alarm is None:
                self._raise(
                    out,
                    ActiveAlarm(
                        code=rule.code,
                        priority=rule.priority,
                        kind=rule.kind,
                        activated_t=det.t,
                        param=param,
                        value=value,
                        limit=limit,
                        latching=rule.latching,
                    ),
                    det.t,
                    message=_bp_message(clause, det, param, median),
                )
            else:
                alarm.condition = True
            return
        if alarm is None:
            return
        alarm.condition = False
        if not alarm.latching or alarm.acknowledged:
            reading = det.sys if alarm.param == Param.NIBP_SYS else det.dia
            median = None
            for clause in rule.when:
                if clause.hre_ratio is not None:
                    median = self._hre_median(det.t, clause.hre_window_s)
            text = f"NIBP {'SYS' if alarm.param == Param.NIBP_SYS else 'DIA'} {fmt(reading)}"
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
        return _median([v for ts, v in self._hre_hist if t - window_s <= ts <= t])

    # ------------------------------------------------------------------ session steps

    def _session_event(self, t: float, event: SessionEvent, out: list[AlarmEvent]) -> None:
        # Reading 14: session events apply literally, whatever the current phase.
        if event is SessionEvent.SESSION_START:
            self.session = _Session(start=t, phase_start=t)
            self._set_phase(Phase.PRE, t, out)
        elif event is SessionEvent.INFUSION_START:
            if self.session is None:
                self.session = _Session(start=t, phase_start=t)
            self.session.baseline = self._take_baseline(t, self.session)
            self.session.phase_start = t
            self._set_phase(Phase.INFUSION, t, out)
            bl = self.session.baseline
            rule = self.policy.baseline
            if bl.pre_determinations < rule.min_determinations:
                self._raise(
                    out,
                    ActiveAlarm(
                        code=rule.code,
                        priority=rule.priority,
                        kind=AlarmKind.ADVISORY,
                        activated_t=t,
                        param=Param.NIBP_SYS.value,
                        value=float(bl.pre_determinations),
                        limit=float(rule.min_determinations),
                        latching=False,
                    ),
                    t,
                    message=f"only {bl.pre_determinations} pre determinations at infusion start",
                )
        elif event is SessionEvent.INFUSION_STOP:
            if self.session is None:
                self.session = _Session(start=t, phase_start=t)
            self.session.phase_start = t
            self.session.stop_t = t
            self.session.discharge_checked = False
            self._set_phase(Phase.POST, t, out)
            # Reading 10: the post clock restarts at infusion stop
            od = self.policy.nibp_overdue
            if od is not None and od.code in self.active:
                out.append(
                    self._clear(
                        od.code, t, value=0.0, message="infusion stopped: NIBP clock restarts"
                    )
                )
        elif event is SessionEvent.DISCHARGE:
            self._set_phase(Phase.NONE, t, out)
            self.session = None

    def _set_phase(self, phase: Phase, t: float, out: list[AlarmEvent]) -> None:
        """Change phase; clear every active alarm whose phase set excludes the new one."""
        self.phase = phase
        for code in sorted(self.active, key=self._order.__getitem__):
            if phase not in self._phases_of(code):
                out.append(self._clear(code, t, message=f"phase {phase}: {code} does not apply"))

    def _phases_of(self, code: str) -> frozenset[Phase]:
        if code in SYSTEM_ALARMS:
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
            hr0=_median([v for ts, v in self._hre_hist if lo <= ts <= t]),
            spo2_0=_median([v for ts, v in self._spo2_hist if lo <= ts <= t]),
            pre_determinations=len(pre),
        )

    # ------------------------------------------------------------------ timed alarms

    def _timed(self, out: list[AlarmEvent]) -> None:
        """Checks due after every moment (Reading 2), in table order."""
        now = self._now
        session = self.session
        if session is not None:
            for rule in self.policy.no_data:
                if self.phase in rule.phases and rule.code not in self.active:
                    gap = now - self._no_data_ref(rule, session)
                    if gap >= rule.after_s:
                        prio = rule.priority_in_pre if self.phase is Phase.PRE else rule.priority
                        self._raise(
                            out,
                            ActiveAlarm(
                                code=rule.code,
                                priority=prio,
                                kind=AlarmKind.TECHNICAL,
                                activated_t=now,
                                param=_first(rule),
                                value=gap,
                                limit=rule.after_s,
                                latching=False,
                            ),
                            now,
                            message=f"no valid {_params_text(rule)} for {fmt(gap)} s",
                        )
            od = self.policy.nibp_overdue
            if od is not None and self.phase in _OVERDUE_PHASES and od.code not in self.active:
                gap = now - self._overdue_ref(session)
                if gap >= self._overdue_limit():
                    self._raise(
                        out,
                        ActiveAlarm(
                            code=od.code,
                            priority=od.priority,
                            kind=AlarmKind.TECHNICAL,
                            activated_t=now,
                            param=Param.NIBP_SYS.value,
                            value=gap,
                            limit=self._overdue_limit(),
                            latching=False,
                        ),
                        now,
                        message=f"no NIBP determination for {fmt(self._overdue_limit())} s",
                    )
            dc = self.policy.discharge
            if (
                dc is not None
                and self.phase is Phase.POST
                and session.stop_t is not None
                and not session.discharge_checked
                and now >= session.stop_t + dc.after_stop_s
            ):
                session.discharge_checked = True
                self._discharge_check(now, out)
        self._escalate(out)

    def _no_data_ref(self, rule: NoDataRule, session: _Session) -> float:
        last = max((self._last_valid_t.get(p, -math.inf) for p in rule.params), default=-math.inf)
        return max(last, session.start)

    def _overdue_ref(self, session: _Session) -> float:
        last = session.determinations[-1].t if session.determinations else -math.inf
        return max(last, session.phase_start)

    def _overdue_limit(self) -> float:
        od = self.policy.nibp_overdue
        assert od is not None
        return od.infusion_s if self.phase is Phase.INFUSION else od.post_s

    def _discharge_check(self, t: float, out: list[AlarmEvent]) -> None:
        """Reading 11: vitals back within the band of the baseline."""
        dc = self.policy.discharge
        session = self.session
        assert dc is not None
        assert session is not None
        bl = session.baseline
        failing: tuple[str, float, float] | None = None
        checks: list[tuple[str, float | None, float | None]] = [
            (Param.NIBP_SYS.value, self._latest_det("sys"), bl.sys0 if bl else None),
            (Param.NIBP_DIA.value, self._latest_det("dia"), bl.dia0 if bl else None),
            (HRE, self._latest.get(HRE), bl.hr0 if bl else None),
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
            spo2 = self._latest.get(Param.SPO2.value)
            if spo2 is not None and spo2 < bl.spo2_0 - dc.spo2_drop:
                failing = (Param.SPO2.value, spo2, bl.spo2_0 - dc.spo2_drop)
        alarm = self.active.get(dc.code)
        if failing is not None:
            name, x, limit = failing
            if alarm is None:
                param = (
                    (Param.HR.value if self._last_hre_src is Param.HR else Param.PR.value)
                    if name == HRE
                    else name
                )
                self._raise(
                    out,
                    ActiveAlarm(
                        code=dc.code,
                        priority=dc.priority,
                        kind=AlarmKind.ADVISORY,
                        activated_t=t,
                        param=param,
                        value=x,
                        limit=limit,
                        latching=False,
                        signal=name,
                    ),
                    t,
                    message=f"not back to baseline: {name} {fmt(x)} (limit {fmt(limit)})",
                )
        elif alarm is not None:
            out.append(self._clear(dc.code, t, message="vitals back within the baseline band"))

    def _latest_det(self, which: str) -> float | None:
        session = self.session
        if session is None or not session.determinations:
            return None
        d = session.determinations[-1]
        return d.sys if which == "sys" else d.dia

    def _escalate(self, out: list[AlarmEvent]) -> None:
        g = self.policy.general
        now = self._now
        for code in sorted(self.active, key=self._order.__getitem__):
            alarm = self.active[code]
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
        self.active[alarm.code] = alarm
        out.append(self._event(alarm, AlarmState.ACTIVE, t, message=message))

    def _reading(self, alarm: ActiveAlarm) -> float | None:
        """The alarm's latest reading, for informative fields of later events."""
        if alarm.signal is not None and alarm.signal in self._latest:
            return self._latest[alarm.signal]
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
            t=max(t, self._now),
            code=alarm.code,
            priority=alarm.priority,
            kind=alarm.kind,
            state=state,
            param=param if param is not None else alarm.param,
            value=value if value is not None else alarm.value,
            limit=alarm.limit,
            phase=self.phase,
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
        alarm = self.active.pop(code)
        if value is None:
            value = self._reading(alarm)
        return self._event(alarm, AlarmState.CLEARED, t, message=message, param=param, value=value)


_NIBP = (Param.NIBP_SYS, Param.NIBP_DIA, Param.NIBP_MEAN)
_OVERDUE_PHASES = frozenset({Phase.INFUSION, Phase.POST})


def _extend_history(
    hist: deque[tuple[float, float]], t: np.ndarray, v: np.ndarray, before: float
) -> None:
    """Append (t, v) pairs, keeping only those at or after `before` (all of `hist` is older)."""
    cut = int(np.searchsorted(t, before, side="left"))
    if cut > 0:
        hist.clear()
    hist.extend(zip(t[cut:].tolist(), v[cut:].tolist(), strict=True))
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
_NIBP_CODES = np.array([_CODE_OF[p] for p in _NIBP])
_PARAM_LO = np.array([PHYSIOLOGICAL_RANGE[p][0] for p in Param] + [0.0] * len(SessionEvent))
_PARAM_HI = np.array([PHYSIOLOGICAL_RANGE[p][1] for p in Param] + [0.0] * len(SessionEvent))
# Below this many quiet rows numpy costs more than it saves; above _MAX_WINDOW the work thrown
# away when an event cuts a stretch short grows.
_MIN_VECTOR = 32
_MAX_WINDOW = 1 << 16


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
    def continuous(self) -> np.ndarray:
        """Rows that are samples of a continuous parameter (not NIBP, not a session event)."""
        return (self.what < len(Param)) & ~np.isin(self.what, _NIBP_CODES)

    @functools.cached_property
    def in_range(self) -> np.ndarray:
        """Values inside the physiological range of their parameter (docs/ALARMS.md)."""
        with np.errstate(invalid="ignore"):
            inside: np.ndarray = (self.value >= _PARAM_LO[self.what]) & (
                self.value <= _PARAM_HI[self.what]
            )
        return inside


_Pending = tuple["ContinuousRule", "_Stream", np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class _Stream:
    """One signal's samples inside a batch; `rows` are their indices in the batch."""

    rows: np.ndarray
    t: np.ndarray
    v: np.ndarray
    ok: np.ndarray
    src: np.ndarray
    broken: np.ndarray  # a gap over `run_gap_s` before this sample breaks any run


def _ffill_values(x: np.ndarray, mask: np.ndarray, carry: float) -> np.ndarray:
    """X at the last row where mask holds, at or before each row; `carry` before the first."""
    idx = np.where(mask, np.arange(len(x)), -1)
    np.maximum.accumulate(idx, out=idx)
    return np.where(idx >= 0, x[np.maximum(idx, 0)], carry)


def _ffill_times(t: np.ndarray, mask: np.ndarray, carry: float) -> np.ndarray:
    return _ffill_values(t, mask, carry)


def _runs(
    s: _Stream,
    rule: ContinuousRule,
    run: _Run,
    *,
    clear_after: float,
    need_off: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Vectorized "Run semantics": (due_on, due_off, hold_start, off_start) per sample.

    Without `need_off` (the alarm is not active, so nothing can clear), `due_off` is all false
    and `off_start` is right only at the last sample, which is all the state that is kept.
    """
    n = len(s.t)
    with np.errstate(invalid="ignore"):
        holds = s.ok & _NP_OPS[rule.op](s.v, rule.limit)
    off = s.ok & ~holds
    hold_start = _run_starts(s, holds, run.hold_start)
    due_on = holds & (s.t - hold_start >= rule.delay_s)
    if need_off:
        off_start = _run_starts(s, off, run.off_start)
        due_off = off & (s.t - off_start >= clear_after)
        return due_on, due_off, hold_start, off_start
    off_start = np.full(n, math.nan)
    if off[-1]:
        prev = np.empty(n, dtype=bool)
        prev[0] = run.off_start is not None
        prev[1:] = off[:-1]
        new = np.flatnonzero(off & (s.broken | ~prev))
        last_break = np.flatnonzero(~off)
        if len(new) and (not len(last_break) or new[-1] > last_break[-1]):
            off_start[-1] = s.t[new[-1]]
        elif run.off_start is not None and not len(last_break):
            off_start[-1] = run.off_start
    return due_on, np.zeros(n, dtype=bool), hold_start, off_start


def _run_starts(s: _Stream, kind: np.ndarray, carry: float | None) -> np.ndarray:
    """Start time of the run of `kind` each sample is in (NaN where `kind` is false)."""
    if carry is None and not kind.any():
        return np.full(len(kind), math.nan)
    prev = np.empty(len(kind), dtype=bool)
    prev[0] = carry is not None
    prev[1:] = kind[:-1]
    new = kind & (s.broken | ~prev)
    since = _ffill_values(s.t, new, math.nan if carry is None else carry)
    out: np.ndarray = np.where(kind, since, math.nan)
    return out


_NP_OPS = {">=": np.greater_equal, ">": np.greater, "<=": np.less_equal, "<": np.less}
