"""docs/ALARMS.md rule by rule, on small recordings pinned to the exact sample.

Each test writes its recording as rows `(offset_s, param_or_EVENT, value)` from T0 and states the
expected events by reading docs/ALARMS.md, never by running the engine first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from alarms.engine import AlarmEngine, Rows
from alarms.policy import Policy, load_policy
from kernel.vocabulary import AlarmEvent, Param, SessionEvent

T0 = 1767225600.0
Row = tuple[float, str, float | str | None]


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy()


def run(policy: Policy, rows: list[Row], *, engine: AlarmEngine | None = None) -> list[AlarmEvent]:
    engine = engine or AlarmEngine(policy)
    out: list[AlarmEvent] = []
    for off, what, value in rows:
        if what == "EVENT":
            w: Param | SessionEvent = SessionEvent(str(value))
            v = math.nan
        else:
            w = Param(what)
            v = math.nan if value is None else float(value)
        out += engine.row(T0 + off, w, v, valid=not math.isnan(v))
    return out + engine.flush()


def ev(events: list[AlarmEvent], code: str | None = None) -> list[tuple[float, str, str]]:
    """(offset, code, state) of the events, optionally of one code."""
    return [(e.t - T0, e.code, e.state.value) for e in events if code is None or e.code == code]


def session(*, infusion_at: float = 100.0, dets: tuple[float, ...] = (10.0, 40.0)) -> list[Row]:
    """session_start at 0, normal pre determinations, infusion_start at `infusion_at`."""
    rows: list[Row] = [(0.0, "EVENT", "session_start")]
    for t in dets:
        rows += [(t, "NIBP_SYS", 120), (t, "NIBP_DIA", 80), (t, "NIBP_MEAN", 93)]
    for t in range(1, int(infusion_at), 10):
        rows += [(float(t), "HR", 70), (float(t) + 0.5, "SPO2", 98)]
    rows.sort(key=lambda r: r[0])
    rows.append((infusion_at, "EVENT", "infusion_start"))
    return rows


def fill(start: float, end: float) -> list[Row]:
    """HR and SpO2 every 10 s in [start, end): no run, no data gap."""
    rows: list[Row] = []
    for i in range(int((end - start) // 10)):
        rows += [(start + 10 * i, "HR", 70), (start + 10 * i + 0.5, "SPO2", 98)]
    return rows


def spo2(start: float, values: Sequence[float | None], step: float = 1.0) -> list[Row]:
    return [(start + i * step, "SPO2", v) for i, v in enumerate(values)]


# ---------------------------------------------------------------- run semantics


def test_desat_fires_at_first_sample_delay_after_run_start(policy: Policy) -> None:
    rows = session() + spo2(200, [91] * 20)
    # run starts at +200; DESAT delay 15 s: first sample at >= +215
    assert ev(run(policy, rows), "DESAT") == [(215.0, "DESAT", "active")]


def test_gap_over_5s_breaks_the_run_exactly_5s_does_not(policy: Policy) -> None:
    rows = session() + spo2(200, [91] * 8) + spo2(212.25, [91] * 20)  # gap 5.25 s after +207
    assert ev(run(policy, rows), "DESAT") == [(227.25, "DESAT", "active")]
    rows = session() + spo2(200, [91] * 8) + spo2(212, [91] * 20)  # gap of exactly 5 s
    assert ev(run(policy, rows), "DESAT") == [(215.0, "DESAT", "active")]


def test_invalid_sample_breaks_the_run(policy: Policy) -> None:
    rows = session() + spo2(200, [91] * 10 + [None] + [91] * 20)  # empty at +210
    # new run from +211: +226
    assert ev(run(policy, rows), "DESAT") == [(226.0, "DESAT", "active")]


def test_out_of_range_value_is_an_invalid_sample(policy: Policy) -> None:
    rows = session() + spo2(200, [91] * 10 + [30] + [91] * 20)  # SpO2 30 % is outside 50-100
    assert ev(run(policy, rows), "DESAT") == [(226.0, "DESAT", "active")]


def test_limit_is_strict_for_less_than(policy: Policy) -> None:
    rows = session() + spo2(200, [92] * 30)
    assert ev(run(policy, rows), "DESAT") == []


def test_clear_needs_5s_of_not_holding(policy: Policy) -> None:
    rows = session() + spo2(200, [91] * 16 + [93, 93, 93, 93, 91] + [93] * 10)
    # active at +215; back >= 92 at +216..+219 (4 s) then 91 at +220 breaks it;
    # back from +221, cleared at the first sample >= +226
    assert ev(run(policy, rows), "DESAT") == [
        (215.0, "DESAT", "active"),
        (226.0, "DESAT", "cleared"),
    ]


def test_data_loss_clears_no_physiological_alarm(policy: Policy) -> None:
    rows = session() + spo2(200, [91] * 16 + [None] * 3) + spo2(260, [97] * 10)
    events = run(policy, rows)
    assert ev(events, "DESAT") == [(215.0, "DESAT", "active"), (265.0, "DESAT", "cleared")]


# ---------------------------------------------------------------- HRE


def test_hre_holds_last_valid_hr_for_10s_inclusive_then_pr(policy: Policy) -> None:
    rows = session()
    rows += [(200 + i, "HR", 100) for i in range(5)]  # last valid HR 100 at +204
    rows += [(200 + i, "PR", 130) for i in range(60)]
    rows.sort(key=lambda r: r[0])
    events = run(policy, rows)
    # PR rows up to +214 still use HR (exactly 10 s old counts); from +215 HRE = PR 130,
    # a run of >= 120 from +215, TACHY after 20 s at +235, param PR
    tachy = [e for e in events if e.code == "TACHY"]
    assert [(e.t - T0, e.state.value, e.param, e.value) for e in tachy] == [
        (235.0, "active", "PR", 130.0)
    ]


def test_invalid_hr_holds_the_last_valid_one(policy: Policy) -> None:
    rows = session() + [(200.0 + i, "HR", 150 if i < 3 else None) for i in range(30)]
    # valid HR 150 at +200..+202; invalid HR rows then HRE = 150 until +212 (10 s hold);
    # TACHY_SEVERE (>= 140, 10 s) run from +200 fires at +210
    events = run(policy, rows)
    assert ev(events, "TACHY_SEVERE") == [(210.0, "TACHY_SEVERE", "active")]


# ---------------------------------------------------------------- phases and latching


def test_run_counts_before_the_phase_then_raises_at_next_sample(policy: Policy) -> None:
    rows: list[Row] = [(0.0, "EVENT", "session_start"), *spo2(10, [91] * 40)]
    rows.append((40.5, "EVENT", "infusion_start"))
    rows.sort(key=lambda r: r[0])
    # the run started at +10 in pre; DESAT is not raised in pre; first sample in infusion +41
    assert ev(run(policy, rows), "DESAT") == [(41.0, "DESAT", "active")]


def test_latched_alarm_outlives_its_condition_until_phase_leaves_set(policy: Policy) -> None:
    rows = session() + spo2(200, [87] * 12 + [97] * 30)
    rows += [(300.0, "EVENT", "infusion_stop")]
    rows += [(310.0, "EVENT", "discharge")]
    events = run(policy, rows)
    # DESAT_SEVERE (< 88, 10 s) at +210, latched, escalates at +270; post keeps it;
    # discharge (phase none, outside its set) clears it
    assert ev(events, "DESAT_SEVERE") == [
        (210.0, "DESAT_SEVERE", "active"),
        (270.0, "DESAT_SEVERE", "escalated"),
        (310.0, "DESAT_SEVERE", "cleared"),
    ]
    assert [e.phase.value for e in events if e.code == "DESAT_SEVERE"] == [
        "infusion",
        "infusion",
        "none",
    ]


def test_escalation_levels_and_acknowledgement(policy: Policy) -> None:
    engine = AlarmEngine(policy)
    events = run(policy, session() + spo2(200, [84] * 10 + [97] * 200, step=1.0), engine=engine)
    crit = [(e.t - T0, e.state.value, e.level) for e in events if e.code == "DESAT_CRITICAL"]
    # < 85 for 5 s from +200: active at +205; escalations at +265, +325, +385 (levels 1-3)
    assert crit == [
        (205.0, "active", None),
        (265.0, "escalated", 1),
        (325.0, "escalated", 2),
        (385.0, "escalated", 3),
    ]
    # the condition ended long ago: acknowledging a latched alarm clears it
    acked = engine.acknowledge("DESAT_CRITICAL", T0 + 420.0, user="nurse")
    assert [(e.state.value, e.user) for e in acked] == [
        ("acknowledged", "nurse"),
        ("cleared", None),
    ]
    assert "DESAT_CRITICAL" not in engine.active


def test_a_latched_alarms_condition_end_is_no_event_only_its_condition(policy: Policy) -> None:
    # docs/ALARMS.md "States": DESAT_CRITICAL (< 85 for 5 s, latching) at +205; SpO2 97 from
    # +210, so its condition ends at +215 (5 s, Reading 4); < 85 again from +220 holds again
    # at +225 (its delay); 97 from +226 ends it again at +231. None of it is an event.
    engine = AlarmEngine(policy)
    run(policy, session(), engine=engine)
    values = [84] * 10 + [97] * 10 + [84] * 6 + [97] * 10
    seen: list[tuple[float, bool, float | None]] = []
    events: list[AlarmEvent] = []
    for i, value in enumerate(values):
        off = 200.0 + i
        events += engine.row(T0 + off, Param.SPO2, float(value))
        alarm = engine.active.get("DESAT_CRITICAL")
        if alarm is not None:
            ended = None if alarm.ended_t is None else alarm.ended_t - T0
            if not seen or seen[-1][1:] != (alarm.condition, ended):
                seen.append((off, alarm.condition, ended))
    assert ev(events, "DESAT_CRITICAL") == [(205.0, "DESAT_CRITICAL", "active")]
    assert seen == [(205.0, True, None), (215.0, False, 215.0), (225.0, True, None),
                    (231.0, False, 231.0)]  # fmt: skip
    # the same rows in one batch (replay, resume) leave the same state
    whole = AlarmEngine(policy)
    run(policy, session(), engine=whole)
    batch = [(T0 + 200.0 + i, Param.SPO2, float(v), True) for i, v in enumerate(values)]
    assert ev(whole.rows(Rows.of(batch)), "DESAT_CRITICAL") == [(205.0, "DESAT_CRITICAL", "active")]
    alarm = whole.active["DESAT_CRITICAL"]
    assert (alarm.condition, alarm.ended_t) == (False, T0 + 231.0)


def test_acknowledged_high_alarm_does_not_escalate(policy: Policy) -> None:
    engine = AlarmEngine(policy)
    run(policy, session() + spo2(200, [84] * 10), engine=engine)
    engine.acknowledge("DESAT_CRITICAL", T0 + 210.0)
    later = run(policy, spo2(300, [84] * 200), engine=engine)
    assert ev(later, "DESAT_CRITICAL") == []


# ---------------------------------------------------------------- no data


def test_no_data_fires_on_the_tick_with_no_sample(policy: Policy) -> None:
    rows = session() + fill(100, 200) + spo2(200, [97]) + [(245.0, "HR", 70)]
    # last valid SpO2 at +200; due at +230, found by the tick at +230 (no row there)
    events = run(policy, rows)
    nd = [
        (e.t - T0, e.state.value, e.value, e.priority.value)
        for e in events
        if e.code == "SPO2_NO_DATA"
    ]
    assert nd == [(230.0, "active", 30.0, "medium")]


def test_no_data_is_low_in_pre_and_counts_from_session_start(policy: Policy) -> None:
    rows: list[Row] = [(0.0, "EVENT", "session_start"), (10.0, "HR", 70), (35.5, "HR", 70)]
    events = run(policy, rows)
    # no SpO2 at all: due at session start + 30 = +30 (tick), priority low in pre
    nd = [(e.t - T0, e.code, e.priority.value) for e in events]
    assert nd == [(30.0, "SPO2_NO_DATA", "low")]


def test_no_data_clears_at_next_valid_sample(policy: Policy) -> None:
    rows = session() + fill(100, 200) + spo2(200, [97]) + spo2(240.5, [None, 97])
    events = run(policy, rows, engine=None)
    assert ev(events, "SPO2_NO_DATA") == [
        (230.0, "SPO2_NO_DATA", "active"),
        (241.5, "SPO2_NO_DATA", "cleared"),
    ]


# ---------------------------------------------------------------- determinations


def det(t: float, sys_: float | None, dia: float | None) -> list[Row]:
    return [(t, "NIBP_SYS", sys_), (t, "NIBP_DIA", dia), (t, "NIBP_MEAN", None)]


def test_bp_pre_gate_needs_two_consecutive_in_pre(policy: Policy) -> None:
    rows: list[Row] = [(0.0, "EVENT", "session_start")]
    rows += det(10, 150, 80) + det(20, 130, 80) + det(30, 120, 95) + det(40, 141, 85)
    events = run(policy, rows)
    # 150 then 130 (no); 130 then 120/95 (no, 130/80 does not hold); 120/95 then 141/85: both hold
    assert ev(events, "BP_PRE_GATE") == [(40.0, "BP_PRE_GATE", "active")]


def test_bp_crisis_single_severe_and_pairing_across_phases(policy: Policy) -> None:
    rows: list[Row] = [(0.0, "EVENT", "session_start")]
    rows += det(10, 150, 90) + det(20, 185, 100)
    rows += [(30.0, "EVENT", "infusion_start")]
    rows += det(40, 185, 100)  # first infusion determination: never pairs with pre (Reading 7)
    rows += det(50, 150, 90)
    rows += det(60, 150, 121)  # DIA >= 120 alone: crisis at once
    events = run(policy, rows)
    assert ev(events, "BP_CRISIS") == [(60.0, "BP_CRISIS", "active")]
    crisis = next(e for e in events if e.code == "BP_CRISIS")
    assert (crisis.param, crisis.value, crisis.limit) == ("NIBP_DIA", 121.0, 120.0)
    assert ev(events, "BP_HIGH") == [
        (40.0, "BP_HIGH", "active"),
        (50.0, "BP_HIGH", "cleared"),
        (60.0, "BP_HIGH", "active"),
    ]


def test_bp_crisis_on_two_consecutive_takes_the_pair_limit(policy: Policy) -> None:
    rows = session() + det(110, 182, 100) + det(120, 150, 112)
    events = run(policy, rows)
    crisis = [(e.t - T0, e.param, e.value, e.limit) for e in events if e.code == "BP_CRISIS"]
    assert crisis == [(120.0, "NIBP_DIA", 112.0, 110.0)]


def test_determination_without_valid_dia_is_no_determination(policy: Policy) -> None:
    rows = session(infusion_at=100.0) + det(110, 190, None) + det(120, 190, 100)
    events = run(policy, rows)
    # +110 is no determination, so +120 has no previous infusion partner: BP_HIGH only
    assert ev(events, "BP_CRISIS") == []
    assert ev(events, "BP_HIGH") == [(120.0, "BP_HIGH", "active")]


def test_baseline_incomplete_and_relative_rules_off_without_baseline(policy: Policy) -> None:
    rows = session(dets=()) + det(110, 200, 100) + det(120, 200, 100)
    events = run(policy, rows)
    assert ev(events, "BASELINE_INCOMPLETE") == [
        (100.0, "BASELINE_INCOMPLETE", "active"),
        (110.0, "BASELINE_INCOMPLETE", "cleared"),
    ]
    assert ev(events, "BP_RISE") == []  # no SYS0: relative rules are off (Reading 9)
    assert next(e for e in events if e.code == "BASELINE_INCOMPLETE").value == 0.0


def test_nibp_overdue_from_the_later_of_determination_and_phase_start(policy: Policy) -> None:
    rows = session(infusion_at=100.5) + [(float(t), "HR", 70) for t in range(101, 530, 20)]
    events = run(policy, rows)
    od = [(e.t - T0, e.state.value, e.value) for e in events if e.code == "NIBP_OVERDUE"]
    # due at +100.5 + 420 = +520.5; first tick or row at or after: tick +521
    assert od == [(521.0, "active", 420.5)]
