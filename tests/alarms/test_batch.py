"""The numpy fast path (`AlarmEngine.rows`) gives exactly the events of `row` on every row.

Recordings are random but built to be hard: values around every limit, gaps around 5 s and 30 s,
invalid and out-of-range samples, HR dropping out so PR takes over, determinations, and session
steps in and out of order. The reference is the plain per-row loop (`replay_per_row`).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alarms.engine import AlarmEngine, Rows
from alarms.policy import Policy, load_policy
from alarms.replay import Row, replay, replay_per_row
from kernel.vocabulary import AlarmEvent, Param, SessionEvent

T0 = 1767225600.0
_STEPS = (
    SessionEvent.SESSION_START,
    SessionEvent.INFUSION_START,
    SessionEvent.INFUSION_STOP,
    SessionEvent.DISCHARGE,
)


# seconds between rows: mostly 1 Hz, sometimes exactly the 5 s gap limit or past it, rarely
# past the 30 s no-data limit
_DT = [0.0, 0.5, 1.0, 2.0, 5.0, 5.5, 12.0, 31.0]
_DT_P = [0.05, 0.05, 0.75, 0.05, 0.04, 0.03, 0.025, 0.005]


def recording(seed: int, n: int) -> list[Row]:
    rng = np.random.default_rng(seed)
    rows: list[Row] = []
    t = T0
    step = 0
    hr, spo2 = 80.0, 95.0
    hr_lost = False
    for _ in range(n):
        t += float(rng.choice(_DT, p=_DT_P))
        r = rng.random()
        if r < 0.004:
            rows.append(
                Row(
                    t,
                    _STEPS[step % 4] if rng.random() < 0.9 else _STEPS[int(rng.integers(4))],
                    math.nan,
                )
            )
            step += 1
            continue
        if r < 0.02:
            sys_ = float(rng.choice([120, 150, 175, 182, 195, 205]))
            dia = float(rng.choice([70, 85, 95, 112, 125]))
            dia_v = math.nan if rng.random() < 0.2 else dia
            rows += [
                Row(t, Param.NIBP_SYS, sys_),
                Row(t, Param.NIBP_DIA, dia_v),
                Row(t, Param.NIBP_MEAN, math.nan),
            ]
            continue
        if rng.random() < 0.01:
            hr_lost = not hr_lost
        hr = float(np.clip(hr + rng.normal(0, 6), 30, 170))
        spo2 = float(np.clip(spo2 + rng.normal(0, 1.5), 75, 100))
        bad = rng.random() < 0.04
        if r < 0.45:
            if not hr_lost:
                rows.append(Row(t, Param.HR, math.nan if bad else round(hr)))
            rows.append(Row(t, Param.PR, 500.0 if bad else round(hr + rng.normal(0, 2))))
        elif r < 0.95:
            rows.append(Row(t, Param.SPO2, math.nan if bad else round(spo2)))
        else:
            rows.append(Row(t, Param.RR, float(rng.integers(2, 40))))
    return rows


_CUFF = (Param.NIBP_SYS, Param.NIBP_DIA, Param.NIBP_MEAN)


def with_rr_rule(policy: Policy) -> Policy:
    """The shipped policy plus a zero-delay RR rule, so a plain-parameter signal is exercised."""
    extra = policy.continuous[0].model_copy(
        update={
            "code": "RR_LOW",
            "signal": Param.RR,
            "op": "<=",
            "limit": 8.0,
            "delay_s": 0.0,
            "latching": False,
        }
    )
    return policy.model_copy(update={"continuous": (*policy.continuous, extra)})


def events(it: list[AlarmEvent]) -> list[dict[str, object]]:
    return [e.to_json() for e in it]


# one batch per row costs a batch's set-up per row: fewer, still varied, examples
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(50, 3000))
def test_batch_equals_row_by_row(seed: int, n: int) -> None:
    policy = with_rr_rule(load_policy())
    rows = recording(seed, n)
    assert events(list(replay(rows, policy))) == events(list(replay_per_row(rows, policy)))


# 25 whole recordings: about 6 s idle, far more on a loaded machine
@pytest.mark.timeout(240)
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), cuts=st.lists(st.integers(1, 400), min_size=1, max_size=20))
def test_batches_of_any_size_equal_one_batch(seed: int, cuts: list[int]) -> None:
    """The live daemon feeds whatever arrived; how the stream is cut must not matter."""
    policy = load_policy()
    rows = recording(seed, 2000)
    engine = AlarmEngine(policy)
    out: list[AlarmEvent] = []
    i = 0
    k = 0
    while i < len(rows):
        size = cuts[k % len(cuts)]
        k += 1
        chunk = rows[i : i + size]
        out += engine.rows(Rows.of((r.t, r.what, r.value, not math.isnan(r.value)) for r in chunk))
        i += size
        if k % 2:
            # the engine's state is one object: an engine started from a snapshot of it goes
            # on exactly as the one that took it
            engine = AlarmEngine.resume_from(policy, engine.snapshot())
    out += engine.flush()
    assert events(out) == events(list(replay(rows, policy)))


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_rows_out_of_time_order_batch_equals_row_by_row(seed: int) -> None:
    """Live, a late sample may come stamped before the one before it: same events either way."""
    policy = with_rr_rule(load_policy())
    rng = np.random.default_rng(seed)
    rows = [
        Row(r.t - float(rng.choice([0.5, 1.0, 3.0])), r.what, r.value)
        if isinstance(r.what, Param) and r.what not in _CUFF and rng.random() < 0.1
        else r
        for r in recording(seed, 1200)
    ]
    assert any(b.t < a.t for a, b in itertools.pairwise(rows))
    assert events(list(replay(rows, policy))) == events(list(replay_per_row(rows, policy)))


def test_long_quiet_stretch_goes_through_the_fast_path() -> None:
    """A guard that the comparison above is not vacuous: quiet rows really are batched."""
    policy = load_policy()
    rows = [Row(T0 + i, Param.SPO2, 97.0) for i in range(5000)]
    engine = AlarmEngine(policy)
    batch = Rows.of((r.t, r.what, r.value, True) for r in rows)
    calls = 0
    original = engine.row

    def counting(*args: object, **kwargs: object) -> list[AlarmEvent]:
        nonlocal calls
        calls += 1
        return original(*args, **kwargs)  # type: ignore[arg-type]

    engine.row = counting  # type: ignore[method-assign]
    assert engine.rows(batch) == []
    assert calls < 100
    assert engine.now == T0 + 4999
