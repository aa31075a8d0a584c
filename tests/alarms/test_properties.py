"""Properties of the alarm core on random recordings (hypothesis).

Each example is one session in `infusion` (session_start at T0, infusion_start at T0 + 1, no
determination) followed by HR/PR/SpO2 rows about once a second, with gaps of 0.5 to 8 s, ECG leads
that come and go, invalid samples (empty, NaN or outside the physiological range) and values on
both sides of every continuous limit. Times are multiples of 0.25 s, so every difference the
policy compares (gap 5 s, delays) is exact.

The checks recompute, independently of the engine, what docs/ALARMS.md says about the
recording: the effective heart rate `HRE` (Reading 5), runs ("Run semantics", Reading 4).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alarms.policy import ContinuousRule, Policy, load_policy
from alarms.replay import Row, replay
from kernel.vocabulary import AlarmEvent, AlarmState, Param, Phase, SessionEvent, in_range

T0 = 1767225600.0
POLICY = load_policy()
RULES = {r.code: r for r in POLICY.continuous}
GAP = 5.0  # docs/ALARMS.md "Run semantics": a gap over 5 s breaks a run
CLEAR_AFTER = 5.0  # Reading 4
HR_HOLD = 10.0  # Reading 5

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ---------------------------------------------------------------- generated recordings

SPO2_LEVELS = [97.0, 93.0, 92.0, 91.0, 89.0, 88.0, 87.0, 85.0, 84.0, 80.0]
HR_LEVELS = [70.0, 119.0, 120.0, 121.0, 139.0, 140.0, 150.0, 46.0, 45.0, 41.0, 40.0, 36.0]
# time steps (s) between sample instants: mostly 1 Hz, sometimes a gap around the 5 s limit
STEPS = [1.0] * 8 + [0.5, 0.75, 2.0, 4.75, 5.0, 5.25, 6.0, 8.0]
JITTER = [0, -1, 1, 0, 0]
# a reading: valid (13 in 16), or invalid: empty/NaN, below or above the physiological range
VALIDITY = [None] * 13 + ["empty", "low", "high"]
# One integer per sample instant encodes its step, jitters and validities (one draw is much
# cheaper than six; 0 decodes to the plainest instant, so hypothesis shrinks towards it).
RADICES = (len(STEPS), len(JITTER), len(JITTER), len(JITTER), len(VALIDITY), len(VALIDITY))
INSTANT = st.integers(0, math.prod(RADICES) - 1)


@dataclass(frozen=True)
class Instant:
    """One sample instant: the time step before it, the jitters, and which readings are bad."""

    step: float
    d_spo2: int
    d_hr: int
    d_pr: int
    bad_spo2: str | None
    bad_pr: str | None


def decode(code: int) -> Instant:
    digits = []
    for radix in RADICES:
        code, digit = divmod(code, radix)
        digits.append(digit)
    step, d_spo2, d_hr, d_pr, bad_spo2, bad_pr = digits
    return Instant(
        STEPS[step],
        JITTER[d_spo2],
        JITTER[d_hr],
        JITTER[d_pr],
        VALIDITY[bad_spo2],
        VALIDITY[bad_pr],
    )


@dataclass(frozen=True)
class Segment:
    """A stretch of sample instants around one level per signal."""

    spo2: float
    hr: float
    pr: float
    ecg: str  # "on": HR rows; "off": no HR rows; "invalid": HR rows without a value
    noisy: bool  # False: no gap over 1 s and no invalid reading, so runs can last
    instants: tuple[Instant, ...]


SEGMENTS = st.builds(
    Segment,
    spo2=st.sampled_from(SPO2_LEVELS),
    hr=st.sampled_from(HR_LEVELS),
    pr=st.sampled_from(HR_LEVELS),
    ecg=st.sampled_from(["on", "on", "on", "off", "invalid"]),
    noisy=st.booleans(),
    instants=st.lists(INSTANT.map(decode), min_size=3, max_size=30).map(tuple),
)


def _reading(param: Param, bad: str | None, value: float) -> float:
    if bad is None:
        return value
    if bad == "empty":
        return math.nan
    lo, hi = {Param.SPO2: (30.0, 101.0), Param.HR: (10.0, 301.0), Param.PR: (10.0, 301.0)}[param]
    return lo if bad == "low" else hi


def build(segs: list[Segment]) -> list[Row]:
    """The recording: session steps, then at each instant HR (if any), PR, SPO2 in that order."""
    rows = [
        Row(T0, SessionEvent.SESSION_START, math.nan),
        Row(T0 + 1.0, SessionEvent.INFUSION_START, math.nan),
    ]
    t = T0 + 1.0
    for seg in segs:
        for i in seg.instants:
            t += i.step if seg.noisy else min(i.step, 1.0)
            if seg.ecg == "on":
                rows.append(Row(t, Param.HR, seg.hr + i.d_hr))
            elif seg.ecg == "invalid":
                rows.append(Row(t, Param.HR, math.nan))
            bad_pr, bad_spo2 = (i.bad_pr, i.bad_spo2) if seg.noisy else (None, None)
            rows.append(Row(t, Param.PR, _reading(Param.PR, bad_pr, seg.pr + i.d_pr)))
            spo2 = min(100.0, seg.spo2 + i.d_spo2)
            rows.append(Row(t, Param.SPO2, _reading(Param.SPO2, bad_spo2, spo2)))
    return rows


RECORDINGS = st.lists(SEGMENTS, min_size=2, max_size=16).map(build)


# ---------------------------------------------------------------- independent model

# "value op limit", written out here rather than taken from the code under test
OPS: dict[str, Callable[[float, float], bool]] = {
    "<": lambda v, lim: v < lim,
    "<=": lambda v, lim: v <= lim,
    ">": lambda v, lim: v > lim,
    ">=": lambda v, lim: v >= lim,
}


def holds(rule: ContinuousRule, value: float) -> bool:
    return OPS[rule.op](value, rule.limit)


@dataclass(frozen=True)
class Sig:
    """One sample of a signal as docs/ALARMS.md sees it."""

    t: float
    value: float
    valid: bool


def signal_samples(rows: list[Row], signal: str) -> list[Sig]:
    """The samples of `signal` (`SPO2` or `HRE`) in row order."""
    out: list[Sig] = []
    last_hr: tuple[float, float] | None = None
    for row in rows:
        if not isinstance(row.what, Param):
            continue
        param = row.what
        valid = in_range(param, row.value)  # NaN and out-of-range are invalid ("Vocabulary")
        if signal == "SPO2" and param is Param.SPO2:
            out.append(Sig(row.t, row.value, valid))
        elif signal == "HRE" and param in (Param.HR, Param.PR):
            # Reading 5: the latest valid HR if at most 10 s old, else a PR row's own value
            if param is Param.HR and valid:
                last_hr = (row.t, row.value)
            if last_hr is not None and row.t - last_hr[0] <= HR_HOLD:
                out.append(Sig(row.t, last_hr[1], True))
            elif param is Param.PR:
                out.append(Sig(row.t, row.value, valid))
            # else: an HR row past the hold is no HRE sample (the ECG leads are off)
    return out


def run_start(samples: list[Sig], i: int, rule: ContinuousRule) -> float | None:
    """Start of the run of `rule`'s condition that sample `i` belongs to, or None."""
    s = samples[i]
    if not (s.valid and holds(rule, s.value)):
        return None
    start = s.t
    for j in range(i - 1, -1, -1):
        p = samples[j]
        if samples[j + 1].t - p.t > GAP or not (p.valid and holds(rule, p.value)):
            break
        start = p.t
    return start


def model_transitions(
    rows: list[Row], rule: ContinuousRule
) -> list[tuple[float, str, float | None]]:
    """(t, state, value) of `rule`'s active/cleared events, straight from docs/ALARMS.md.

    `value` is the crossing value of `active` events (exact, Reading 15); None for `cleared`
    (informative only).

    The whole recording is in `infusion` (in every rule's phase set) and nothing is acknowledged,
    so a latching alarm, once active, stays active.
    """
    out: list[tuple[float, str, float | None]] = []
    active = False
    hold: float | None = None
    off: float | None = None
    prev_t: float | None = None
    for s in signal_samples(rows, rule.signal):
        broken = prev_t is not None and s.t - prev_t > GAP
        prev_t = s.t
        if not s.valid:
            hold = off = None
        elif holds(rule, s.value):
            off = None
            hold = s.t if hold is None or broken else hold
        else:
            hold = None
            off = s.t if off is None or broken else off
        if not active and hold is not None and s.t - hold >= rule.delay_s:
            active = True
            out.append((s.t, "active", s.value))
        elif active and not rule.latching and off is not None and s.t - off >= CLEAR_AFTER:
            active = False
            out.append((s.t, "cleared", None))
    return out


def events_of(rows: list[Row], policy: Policy = POLICY) -> list[AlarmEvent]:
    return list(replay(rows, policy))


def of_code(events: list[AlarmEvent], code: str) -> Iterator[AlarmEvent]:
    return (e for e in events if e.code == code)


# ---------------------------------------------------------------- properties


@PROPERTY
@given(RECORDINGS)
def test_no_alarm_without_its_condition(rows: list[Row]) -> None:
    """(a) Every continuous `active` event is backed by a run of at least `delay_s`."""
    for event in events_of(rows):
        rule = RULES.get(event.code)
        if rule is None or event.state is not AlarmState.ACTIVE:
            continue
        assert event.phase is Phase.INFUSION
        assert event.limit == rule.limit
        assert event.value is not None
        samples = signal_samples(rows, rule.signal)
        # a sample of the signal at the event's time, with the event's value, that ends a run
        # of the condition lasting at least delay_s (no invalid sample, no gap over 5 s)
        backing = [
            (i, start)
            for i, s in enumerate(samples)
            if s.t == event.t
            and s.value == event.value
            and (start := run_start(samples, i, rule)) is not None
        ]
        assert backing, (event, [s for s in samples if abs(s.t - event.t) < 20])
        assert any(event.t - start >= rule.delay_s for _, start in backing), (event, backing)
        assert holds(rule, event.value)
        if rule.signal == "SPO2":
            assert event.param == "SPO2"
        else:
            assert event.param in {"HR", "PR"}


@PROPERTY
@given(RECORDINGS)
def test_continuous_alarms_follow_alarms_md_exactly(rows: list[Row]) -> None:
    """Every continuous rule's active/cleared events are exactly the model's (and none is
    missed): first sample `delay_s` into a run; non-latching ones clear 5 s into a run of
    not-holding; latched ones stay active."""
    events = events_of(rows)
    for code, rule in RULES.items():
        got = [
            (e.t, e.state.value, e.value if e.state is AlarmState.ACTIVE else None)
            for e in of_code(events, code)
            if e.state in (AlarmState.ACTIVE, AlarmState.CLEARED)
        ]
        assert got == model_transitions(rows, rule), code


@PROPERTY
@given(RECORDINGS, st.data())
def test_a_longer_delay_never_fires_earlier(rows: list[Row], data: st.DataObject) -> None:
    """(b) Two policies differing only in DESAT's delay: the longer one fires no earlier."""
    d1 = data.draw(st.sampled_from([0.0, 1.0, 4.75, 5.0, 10.0, 15.0]), label="d1")
    d2 = data.draw(st.sampled_from([1.0, 5.0, 5.25, 15.0, 20.0, 40.0]).filter(lambda d: d > d1))

    def with_delay(d: float) -> Policy:
        rules = tuple(
            r.model_copy(update={"delay_s": d}) if r.code == "DESAT" else r
            for r in POLICY.continuous
        )
        return POLICY.model_copy(update={"continuous": rules})

    def first(d: float) -> float | None:
        return next(
            (
                e.t
                for e in events_of(rows, with_delay(d))
                if e.code == "DESAT" and e.state is AlarmState.ACTIVE
            ),
            None,
        )

    t1, t2 = first(d1), first(d2)
    if t2 is not None:
        assert t1 is not None
        assert t2 >= t1


@PROPERTY
@given(RECORDINGS)
def test_event_times_are_ordered_and_states_follow_the_life_cycle(rows: list[Row]) -> None:
    """(c) Event times never go backwards; `cleared` and `escalated` only follow an `active` of
    the same code that has not cleared; an alarm is not raised twice while active."""
    events = events_of(rows)
    times = [e.t for e in events]
    assert times == sorted(times)
    open_codes: dict[str, int] = {}  # code -> escalation level reached
    for e in events:
        if e.state is AlarmState.ACTIVE:
            assert e.code not in open_codes, e
            open_codes[e.code] = 0
        elif e.state is AlarmState.ESCALATED:
            assert e.code in open_codes, e
            assert e.level == open_codes[e.code] + 1
            open_codes[e.code] += 1
        elif e.state is AlarmState.CLEARED:
            assert e.code in open_codes, e
            del open_codes[e.code]
        else:
            raise AssertionError(f"nobody acknowledged: {e}")


@PROPERTY
@given(RECORDINGS)
def test_replay_is_deterministic(rows: list[Row]) -> None:
    """(d) The same rows twice give the same events."""
    first = [e.to_json() for e in events_of(rows)]
    second = [e.to_json() for e in events_of(list(rows))]
    assert first == second
