"""The three readings of docs/ALARMS.md settled after the independent evaluation (5, 14 and 15).

Each recording is pinned to the sample; the expected events are worked out by hand from the
reading, and both the per-row path and the batch path must give them.
"""

from __future__ import annotations

import math

import pytest

from alarms.engine import AlarmEngine, Rows
from alarms.policy import Policy, load_policy
from kernel.vocabulary import AlarmEvent, Param, SessionEvent

T0 = 1767225600.0
Row = tuple[float, str, float | str | None]


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy()


def _typed(rows: list[Row]) -> list[tuple[float, Param | SessionEvent, float, bool]]:
    out: list[tuple[float, Param | SessionEvent, float, bool]] = []
    for off, what, value in sorted(rows, key=lambda r: r[0]):
        if what == "EVENT":
            out.append((T0 + off, SessionEvent(str(value)), math.nan, True))
        else:
            v = math.nan if value is None else float(value)
            out.append((T0 + off, Param(what), v, not math.isnan(v)))
    return out


def per_row(policy: Policy, rows: list[Row]) -> list[AlarmEvent]:
    engine = AlarmEngine(policy)
    out: list[AlarmEvent] = []
    for t, what, v, ok in _typed(rows):
        out += engine.row(t, what, v, valid=ok)
    return out + engine.flush()


def batch(policy: Policy, rows: list[Row]) -> list[AlarmEvent]:
    engine = AlarmEngine(policy)
    return engine.rows(Rows.of(_typed(rows))) + engine.flush()


PATHS = [per_row, batch]


def run(path: object, policy: Policy, rows: list[Row]) -> list[AlarmEvent]:
    """The events of `rows` replayed through `path` (one of `PATHS`)."""
    assert callable(path)
    events: list[AlarmEvent] = path(policy, rows)
    return events


def ev(events: list[AlarmEvent], code: str) -> list[tuple[float, str, str | None, float | None]]:
    return [(e.t - T0, e.state.value, e.param, e.value) for e in events if e.code == code]


def phases(events: list[AlarmEvent], code: str) -> list[tuple[float, str, str]]:
    return [(e.t - T0, e.state.value, e.phase.value) for e in events if e.code == code]


def pre_session(infusion_at: float = 100.0) -> list[Row]:
    """session_start at 0, two normal determinations, HR (ECG) and SpO2 every 10 s, infusion."""
    rows: list[Row] = [(0.0, "EVENT", "session_start")]
    for t in (10.0, 40.0):
        rows += [(t, "NIBP_SYS", 120), (t, "NIBP_DIA", 80), (t, "NIBP_MEAN", 93)]
    for t in range(1, int(infusion_at), 10):
        rows += [(float(t), "HR", 70), (float(t) + 0.5, "SPO2", 98)]
    rows.append((infusion_at, "EVENT", "infusion_start"))
    return rows


# ---------------------------------------------------------------- Reading 5


@pytest.mark.parametrize("path", PATHS)
def test_ecg_leads_off_pr_alone_raises_and_clears_brady(policy: Policy, path: object) -> None:
    # Last valid HR at +91. From +200 the monitor sends an invalid HR every second (leads
    # off) and the oximeter a PR of 42 every second at +.5, then 70 from +260.5. After the
    # 10 s hold an HR row is no HRE sample, so the PR rows alone make the run.
    rows = pre_session()
    rows += [(200.0 + i, "HR", None) for i in range(100)]
    rows += [(200.5 + i, "PR", 42 if i < 60 else 70) for i in range(100)]
    rows += [(200.75 + i, "SPO2", 97) for i in range(100)]
    events = run(path, policy, rows)
    # BRADY (HRE <= 45, 20 s): run from +200.5, active at the first PR row >= +220.5;
    # PR 70 from +260.5, cleared at the first PR row >= 5 s later: +265.5
    assert ev(events, "BRADY") == [
        (220.5, "active", "PR", 42.0),
        (265.5, "cleared", "PR", 70.0),
    ]
    assert next(e for e in events if e.code == "BRADY").limit == 45.0
    assert ev(events, "BRADY_SEVERE") == []


@pytest.mark.parametrize("path", PATHS)
def test_valid_hr_row_resumes_hre_from_hr_at_once(policy: Policy, path: object) -> None:
    # PR 42 alone carries HRE while HR is invalid; a valid HR of 80 at +215 takes over at
    # once, so the PR run (from +200.5) is broken before its 20 s: no BRADY.
    rows = pre_session()
    rows += [(200.0 + i, "HR", None if i != 15 else 80) for i in range(60)]
    rows += [(200.5 + i, "PR", 42) for i in range(60)]
    rows += [(200.75 + i, "SPO2", 97) for i in range(60)]
    events = run(path, policy, rows)
    # HRE = HR 80 from +215 until +225 inclusive (10 s hold), PR 42 again from +225.5:
    # a new run, BRADY at the first PR row >= +245.5
    assert ev(events, "BRADY") == [(245.5, "active", "PR", 42.0)]


# ---------------------------------------------------------------- Reading 14


@pytest.mark.parametrize("path", PATHS)
def test_discharge_clears_latched_alarms_and_next_session_starts_clean(
    policy: Policy, path: object
) -> None:
    rows = pre_session()
    # SpO2 84 for 6 s from +200: DESAT_CRITICAL (< 85, 5 s, latched, all phases) at +205
    rows += [(200.0 + i, "SPO2", 84 if i < 6 else 97) for i in range(150)]
    rows += [(200.5 + i, "HR", 70) for i in range(150)]
    rows += [(300.0, "EVENT", "infusion_stop"), (400.0, "EVENT", "discharge")]
    rows += [(500.0, "EVENT", "session_start")]
    rows += [(500.5 + i, "SPO2", 97) for i in range(20)]
    rows += [(500.75 + i, "HR", 70) for i in range(20)]
    events = run(path, policy, rows)
    crit = phases(events, "DESAT_CRITICAL")
    assert crit == [
        (205.0, "active", "infusion"),
        (265.0, "escalated", "infusion"),
        (325.0, "escalated", "post"),
        (385.0, "escalated", "post"),
        (400.0, "cleared", "none"),
    ]
    cleared = next(e for e in events if e.code == "DESAT_CRITICAL" and e.state.value == "cleared")
    assert "discharged" in cleared.message
    # nothing of the first patient is announced after the discharge
    assert [e.code for e in events if e.t - T0 > 400.0] == []


def test_discharge_clears_every_latched_alarm_and_brady_severe_too(policy: Policy) -> None:
    engine = AlarmEngine(policy)
    rows = pre_session()
    rows += [(200.0 + i, "HR", 38 if i < 12 else 70) for i in range(60)]
    rows += [(200.5 + i, "SPO2", 84 if i < 6 else 97) for i in range(60)]
    rows += [(270.0, "EVENT", "infusion_stop"), (280.0, "EVENT", "discharge")]
    for t, what, v, ok in _typed(rows):
        engine.row(t, what, v, valid=ok)
    assert engine.active == {}


@pytest.mark.parametrize("path", PATHS)
def test_condition_still_holding_after_discharge_is_raised_again(
    policy: Policy, path: object
) -> None:
    rows = pre_session()
    rows += [(200.0 + i, "SPO2", 84) for i in range(30)]
    rows += [(200.5 + i, "HR", 70) for i in range(30)]
    rows += [(210.25, "EVENT", "infusion_stop"), (220.25, "EVENT", "discharge")]
    events = run(path, policy, rows)
    crit = phases(events, "DESAT_CRITICAL")
    # active at +205; cleared at the discharge; the run goes on (runs count whatever the
    # phase), so the next SpO2 row, +221, raises it again in phase none
    assert crit == [
        (205.0, "active", "infusion"),
        (220.25, "cleared", "none"),
        (221.0, "active", "none"),
    ]


# ---------------------------------------------------------------- Reading 15


@pytest.mark.parametrize("path", PATHS)
def test_bp_crisis_payload_names_first_holding_clause_sys_first(
    policy: Policy, path: object
) -> None:
    rows = pre_session()
    for t, s, d in ((110.0, 185, 112), (120.0, 205, 125)):
        rows += [(t, "NIBP_SYS", s), (t, "NIBP_DIA", d), (t, "NIBP_MEAN", None)]
    events = run(path, policy, rows)
    crisis = [
        (e.t - T0, e.state.value, e.param, e.value, e.limit)
        for e in events
        if e.code == "BP_CRISIS"
    ]
    # at +120 both clauses hold (two consecutive >= 180/110, and one >= 200/120): the first
    # clause of the table, and within it SYS before DIA: NIBP_SYS 205 against 180
    assert crisis == [(120.0, "active", "NIBP_SYS", 205.0, 180.0)]
    high = [
        (e.t - T0, e.state.value, e.param, e.value, e.limit) for e in events if e.code == "BP_HIGH"
    ]
    assert high == [(110.0, "active", "NIBP_SYS", 185.0, 180.0)]


@pytest.mark.parametrize("path", PATHS)
def test_bp_crisis_payload_dia_when_only_dia_holds(policy: Policy, path: object) -> None:
    rows = pre_session()
    for t, s, d in ((110.0, 150, 112), (120.0, 160, 125)):
        rows += [(t, "NIBP_SYS", s), (t, "NIBP_DIA", d), (t, "NIBP_MEAN", None)]
    events = run(path, policy, rows)
    crisis = [(e.t - T0, e.param, e.value, e.limit) for e in events if e.code == "BP_CRISIS"]
    # two consecutive by DIA (112, 125 >= 110) is the first clause: DIA 125 against 110
    assert crisis == [(120.0, "NIBP_DIA", 125.0, 110.0)]
