"""BedCore (monitor/session.py) with the shipped policy: docs/PROTOCOL.md step by step.

Times are explicit (no clock). Doses, rates, baselines and alarm orders are worked out by hand
from docs/PROTOCOL.md and docs/ALARMS.md, never read back from the code under test.
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alarms.policy import Policy, load_policy
from kernel.vocabulary import AlarmEvent, AlarmState, Param, Phase, Sample
from monitor.commands import (
    Ack,
    AudioPause,
    Checklist,
    Command,
    Discharge,
    OpenSession,
    Override,
    RecordScore,
    StartInfusion,
    StopInfusion,
)
from monitor.session import BedCore, CommandOutcome

T0 = 1767225600.0
START = T0 + 100.0  # infusion start in the standard session
STOP = START + 2400.0  # 40 min later
NURSE = "nurse.kim"
DOCTOR = "dr.lee"

CHECKLIST_CLEAR: dict[str, bool] = {
    "uncontrolled_hypertension": False,
    "severe_cardiovascular_disease": False,
    "raised_intracranial_pressure": False,
    "active_psychosis_or_mania": False,
    "substance_use_disorder": False,
    "severe_hepatic_impairment": False,
    "pregnancy": False,
    "suicidal_intent_without_safety_plan": False,
    "concomitant_cns_depressants": False,
}
ABSOLUTE = [
    "uncontrolled_hypertension",
    "severe_cardiovascular_disease",
    "raised_intracranial_pressure",
    "active_psychosis_or_mania",
]
RELATIVE = [
    "substance_use_disorder",
    "severe_hepatic_impairment",
    "pregnancy",
    "suicidal_intent_without_safety_plan",
]
OverrideWhat = Literal[
    "bp_pre_gate", "early_discharge", "relative_contraindication", "discharge_without_vitals"
]


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy()


@pytest.fixture
def core(policy: Policy) -> BedCore:
    return BedCore(policy, ward="w1", bed="b3")


# ---------------------------------------------------------------- building blocks


def open_cmd(
    weight: float = 70.0,
    conc: float = 10.0,
    *,
    user: str = NURSE,
    checks: dict[str, bool] | None = None,
) -> OpenSession:
    return OpenSession(
        cmd="open_session",
        request_id="r-open",
        user=user,
        patient_id="P-0042",
        weight_kg=weight,
        concentration_mg_per_ml=conc,
        checklist=Checklist(**{**CHECKLIST_CLEAR, **(checks or {})}),
    )


def start_cmd() -> StartInfusion:
    return StartInfusion(cmd="start_infusion", request_id="r-start", user=NURSE)


def stop_cmd() -> StopInfusion:
    return StopInfusion(cmd="stop_infusion", request_id="r-stop", user=NURSE)


def discharge_cmd() -> Discharge:
    return Discharge(cmd="discharge", request_id="r-dc", user=NURSE)


def override_cmd(what: OverrideWhat, reason: str = "assessed at the bedside") -> Override:
    return Override(cmd="override", request_id="r-ovr", user=DOCTOR, what=what, reason=reason)


def ack_cmd(alarm_id: str, user: str = NURSE) -> Ack:
    return Ack(cmd="ack", request_id="r-ack", user=user, alarm_id=alarm_id)


def ack_code(code: str, user: str = NURSE) -> Ack:
    return Ack(cmd="ack", request_id="r-ack", user=user, code=code)


def nibp(t: float, sys_: float, dia: float) -> list[Sample]:
    return [
        Sample(t, Param.NIBP_SYS, sys_, True, "mon1"),
        Sample(t, Param.NIBP_DIA, dia, True, "mon1"),
        Sample(t, Param.NIBP_MEAN, round((sys_ + 2 * dia) / 3), True, "mon1"),
    ]


def hr_spo2(start: float, end: float, hr: float, spo2: float, step: float = 5.0) -> list[Sample]:
    out: list[Sample] = []
    t = start
    while t < end:
        out += [
            Sample(t, Param.HR, hr, True, "mon1"),
            Sample(t + 0.5, Param.SPO2, spo2, True, "mon1"),
        ]
        t += step
    return out


def ordered(samples: list[Sample]) -> list[Sample]:
    return sorted(samples, key=lambda s: s.t)


def ok(outcome: CommandOutcome) -> CommandOutcome:
    assert outcome.ok, outcome.error
    assert outcome.error is None
    return outcome


def snapshot(core: BedCore, now: float) -> str:
    """Everything a refused command must leave as it was."""
    return json.dumps(
        {
            "phase": core.phase.value,
            "seq": core.seq,
            "state": core.session_state(now),
            "active": core.active_alarms(),
        },
        sort_keys=True,
    )


def refused(core: BedCore, cmd: Command, now: float, *, mentions: str = "") -> CommandOutcome:
    # the ticks due by `now` run before any command is judged; they are not its doing
    core.tick(now)
    before = snapshot(core, now)
    outcome = core.command(cmd, now)
    assert not outcome.ok
    assert outcome.error
    assert mentions.lower() in outcome.error.lower()
    assert outcome.events == ()
    assert outcome.request_id == cmd.request_id
    assert outcome.result_json() == {
        "request_id": cmd.request_id,
        "ok": False,
        "error": outcome.error,
    }
    assert snapshot(core, now) == before
    return outcome


def pre_phase(core: BedCore, *, sys_: float = 120.0, dia: float = 80.0) -> list[AlarmEvent]:
    """Open at T0; HR 70 / SpO2 98 every 5 s; determinations at T0+30 and T0+60."""
    ok(core.command(open_cmd(), T0))
    rows = hr_spo2(T0 + 1, START, 70.0, 98.0) + nibp(T0 + 30, sys_, dia) + nibp(T0 + 60, sys_, dia)
    return core.samples(ordered(rows))


def to_post(core: BedCore, *, last_hr: float = 70.0) -> None:
    """A normal session up to infusion stop at STOP; HR `last_hr` over the last minute."""
    pre_phase(core)
    ok(core.command(start_cmd(), START))
    rows = hr_spo2(START + 1, STOP - 60, 72.0, 97.0)
    rows += hr_spo2(STOP - 60, STOP, last_hr, 97.0)
    rows += [s for k in range(1, 9) for s in nibp(START + 300 * k - 5, 124.0, 82.0)]
    core.samples(ordered(rows))
    ok(core.command(stop_cmd(), STOP))


def observe(core: BedCore, until: float, *, hr: float = 70.0) -> list[AlarmEvent]:
    """`post` as docs/PROTOCOL.md step 4 has it, from STOP to `until`: HR and SpO2 every 5 s, a
    determination (122/80) every 15 min, 30 s before each mark."""
    rows = hr_spo2(STOP + 1, until, hr, 97.0)
    marks = range(1, int((until - STOP) // 900) + 1)
    rows += [s for k in marks for s in nibp(STOP + 900 * k - 30, 122.0, 80.0)]
    return core.samples(ordered(rows))


def phase_of(core: BedCore) -> Phase:
    return core.phase


def session_id(core: BedCore) -> str:
    assert core.session is not None
    return core.session.session_id


# ---------------------------------------------------------------- open_session: dose and rate


def test_dose_and_rate_70kg_at_10mg_per_ml(core: BedCore) -> None:
    # 0.5 mg/kg x 70 kg = 35 mg; 35 mg / 10 mg/mL = 3.5 mL over 40 min = 5.25 mL/h
    outcome = ok(core.command(open_cmd(70.0, 10.0), T0))
    assert core.session is not None
    sid = core.session.session_id
    assert outcome.detail == {"session_id": sid, "dose_mg": 35.0, "rate_ml_per_h": 5.25}
    assert outcome.result_json() == {
        "request_id": "r-open",
        "ok": True,
        "session_id": sid,
        "dose_mg": 35.0,
        "rate_ml_per_h": 5.25,
    }
    assert phase_of(core) is Phase.PRE
    state = core.session_state(T0)
    assert state["phase"] == "pre"
    assert state["session"]["dose_mg"] == 35.0
    assert state["session"]["rate_ml_per_h"] == 5.25
    assert state["session"]["patient_id"] == "P-0042"
    assert state["session"]["opened_by"] == NURSE
    assert state["session"]["opened_t"] == T0


@pytest.mark.parametrize(
    ("weight", "conc", "dose", "rate"),
    [
        (83.0, 5.0, 41.5, 12.45),  # 41.5 mg / 5 = 8.3 mL; x 60/40 = 12.45 mL/h
        (30.0, 10.0, 15.0, 2.25),  # lower weight bound: 15 mg, 1.5 mL, 2.25 mL/h
        (250.0, 50.0, 125.0, 3.75),  # upper bound: 125 mg, 2.5 mL, 3.75 mL/h
        (64.0, 20.0, 32.0, 2.4),  # 32 mg, 1.6 mL, 2.4 mL/h
        (100.0, 1.0, 50.0, 75.0),  # 50 mg, 50 mL, 75 mL/h
    ],
)
def test_dose_and_rate(core: BedCore, weight: float, conc: float, dose: float, rate: float) -> None:
    outcome = ok(core.command(open_cmd(weight, conc), T0))
    assert outcome.detail is not None
    assert outcome.detail["dose_mg"] == pytest.approx(dose, abs=1e-9)
    assert outcome.detail["rate_ml_per_h"] == pytest.approx(rate, abs=1e-9)


@given(
    weight=st.floats(min_value=30.0, max_value=250.0),
    conc=st.floats(min_value=0.5, max_value=100.0),
)
def test_dose_and_rate_follow_the_protocol(policy: Policy, weight: float, conc: float) -> None:
    core = BedCore(policy, ward="w1", bed="b3")
    outcome = ok(core.command(open_cmd(weight, conc), T0))
    assert outcome.detail is not None
    dose = 0.5 * weight
    ml_per_h = dose / conc * 60.0 / 40.0
    # shown to two decimals for the second person's check
    assert abs(outcome.detail["dose_mg"] - dose) <= 0.005 + 1e-9
    assert abs(outcome.detail["rate_ml_per_h"] - ml_per_h) <= 0.005 + 1e-9


@pytest.mark.parametrize("weight", [29.9, 250.1, 0.0, -70.0, 1000.0, math.nan, math.inf])
def test_weight_outside_30_to_250_kg_is_refused(core: BedCore, weight: float) -> None:
    refused(core, open_cmd(weight, 10.0), T0, mentions="weight")
    assert phase_of(core) is Phase.NONE
    assert core.session is None


@pytest.mark.parametrize("item", ABSOLUTE)
def test_absolute_contraindication_is_refused(core: BedCore, item: str) -> None:
    refused(core, open_cmd(checks={item: True}), T0, mentions=item)
    # not even with an override on record
    ok(core.command(override_cmd("relative_contraindication"), T0 + 1))
    refused(core, open_cmd(checks={item: True}), T0 + 2, mentions=item)
    assert core.session is None


@pytest.mark.parametrize("item", RELATIVE)
def test_relative_contraindication_needs_an_override(core: BedCore, item: str) -> None:
    refused(core, open_cmd(checks={item: True}), T0, mentions="override")
    # the override of another gate has nothing to override before a session
    refused(core, override_cmd("bp_pre_gate"), T0 + 1, mentions="phase pre")
    refused(core, open_cmd(checks={item: True}), T0 + 2, mentions="override")

    ok(core.command(override_cmd("relative_contraindication", "safety plan agreed"), T0 + 3))
    ok(core.command(open_cmd(checks={item: True}), T0 + 4))
    assert phase_of(core) is Phase.PRE
    session = core.session_state(T0 + 4)["session"]
    assert session["relative_contraindications"] == [item]
    assert session["opened_by"] == NURSE
    recorded = [o for o in session["overrides"] if o["what"] == "relative_contraindication"]
    assert len(recorded) == 1
    assert recorded[0]["user"] == DOCTOR
    assert recorded[0]["reason"] == "safety plan agreed"
    assert recorded[0]["t"] == T0 + 3
    assert recorded[0]["let_through"] == f"open_session with {item}"
    assert recorded[0]["let_through_t"] == T0 + 4


def test_cns_depressants_are_recorded_not_refused(core: BedCore) -> None:
    ok(core.command(open_cmd(checks={"concomitant_cns_depressants": True}), T0))
    assert core.session_state(T0)["session"]["cns_depressants"] is True


def test_second_open_session_is_refused(core: BedCore) -> None:
    ok(core.command(open_cmd(), T0))
    refused(core, open_cmd(80.0, 10.0), T0 + 5)
    assert core.session_state(T0 + 5)["session"]["weight_kg"] == 70.0


# ---------------------------------------------------------------- phases


def test_start_infusion_refused_without_a_session(core: BedCore) -> None:
    refused(core, start_cmd(), T0, mentions="pre")


def test_steps_refused_outside_their_phase(core: BedCore) -> None:
    refused(core, stop_cmd(), T0)
    refused(core, discharge_cmd(), T0)
    pre_phase(core)
    refused(core, stop_cmd(), START - 1)
    refused(core, discharge_cmd(), START - 1)
    ok(core.command(start_cmd(), START))
    assert phase_of(core) is Phase.INFUSION
    refused(core, start_cmd(), START + 10, mentions="pre")
    refused(core, open_cmd(), START + 10)
    refused(core, discharge_cmd(), START + 10)
    ok(core.command(stop_cmd(), STOP))
    assert phase_of(core) is Phase.POST
    refused(core, start_cmd(), STOP + 10, mentions="pre")
    refused(core, stop_cmd(), STOP + 10)
    refused(core, open_cmd(), STOP + 10)


def test_start_and_stop_infusion(core: BedCore) -> None:
    pre_phase(core)
    ok(core.command(start_cmd(), START))
    state = core.session_state(START + 60)
    assert state["phase"] == "infusion"
    assert state["session"]["infusion_start_t"] == START
    assert state["infusion_elapsed_s"] == 60.0
    ok(core.command(stop_cmd(), STOP))
    state = core.session_state(STOP + 90)
    assert state["phase"] == "post"
    assert state["session"]["infusion_stop_t"] == STOP
    assert state["observation_elapsed_s"] == 90.0
    assert "infusion_elapsed_s" not in state


def test_session_state_phase_baseline_and_timers(core: BedCore) -> None:
    state = core.session_state(T0)
    assert state["phase"] == "none"
    assert state.get("session") is None
    assert state["baseline"] is None
    assert state["t"] == T0

    ok(core.command(open_cmd(), T0))
    # two pre determinations 118/78 and 122/82: SYS0 = 120, DIA0 = 80 (median of two);
    # HR alternating 68 / 72 and SpO2 97 / 99 in the last 300 s: HR0 = 70, SPO2_0 = 98
    rows = nibp(T0 + 30, 118.0, 78.0) + nibp(T0 + 60, 122.0, 82.0)
    for i, t in enumerate(range(1, 100, 5)):
        rows += [
            Sample(T0 + t, Param.HR, 68.0 if i % 2 else 72.0, True, "mon1"),
            Sample(T0 + t + 0.5, Param.SPO2, 97.0 if i % 2 else 99.0, True, "mon1"),
        ]
    core.samples(ordered(rows))
    assert core.session_state(T0 + 99)["baseline"] is None  # taken at infusion start

    ok(core.command(start_cmd(), START))
    state = core.session_state(START + 30)
    assert state["phase"] == "infusion"
    bl = state["baseline"]
    assert (bl["sys0"], bl["dia0"], bl["hr0"], bl["spo2_0"]) == (120.0, 80.0, 70.0, 98.0)
    assert bl["pre_determinations"] == 2
    assert bl["t"] == START
    assert state["infusion_elapsed_s"] == 30.0
    json.dumps(state)  # the retained …/session payload must be JSON


# ---------------------------------------------------------------- BP_PRE_GATE


def test_bp_pre_gate_blocks_start_until_overridden(core: BedCore) -> None:
    ok(core.command(open_cmd(), T0))
    events = core.samples(nibp(T0 + 10, 150.0, 95.0) + nibp(T0 + 20, 150.0, 95.0))
    assert [(e.code, e.state) for e in events] == [("BP_PRE_GATE", AlarmState.ACTIVE)]
    assert events[0].t == T0 + 20

    refused(core, start_cmd(), T0 + 25, mentions="BP_PRE_GATE")
    # the wrong gate: nothing to discharge yet, so refused
    refused(core, override_cmd("early_discharge"), T0 + 26, mentions="phase post")
    refused(core, start_cmd(), T0 + 27, mentions="BP_PRE_GATE")

    ok(core.command(override_cmd("bp_pre_gate", "rechecked manually, 138/88"), T0 + 28))
    assert phase_of(core) is Phase.PRE  # the override alone starts nothing
    ok(core.command(start_cmd(), T0 + 30))
    assert phase_of(core) is Phase.INFUSION
    overrides = core.session_state(T0 + 30)["session"]["overrides"]
    gate = [o for o in overrides if o["what"] == "bp_pre_gate"]
    assert gate == [
        {
            "what": "bp_pre_gate",
            "reason": "rechecked manually, 138/88",
            "user": DOCTOR,
            "t": T0 + 28,
            "overrode": "BP_PRE_GATE active",
            "let_through": "start_infusion with BP_PRE_GATE active",
            "let_through_t": T0 + 30,
            "principal": None,  # given on no login's topic (monitor/authority.py)
        }
    ]


def test_one_high_determination_does_not_gate(core: BedCore) -> None:
    ok(core.command(open_cmd(), T0))
    events = core.samples(nibp(T0 + 10, 120.0, 80.0) + nibp(T0 + 20, 150.0, 95.0))
    assert [e.code for e in events] == []
    ok(core.command(start_cmd(), T0 + 30))


def test_override_is_used_once_per_gate(core: BedCore) -> None:
    ok(core.command(open_cmd(), T0))
    core.samples(nibp(T0 + 10, 150.0, 95.0) + nibp(T0 + 20, 150.0, 95.0))
    ok(core.command(override_cmd("bp_pre_gate"), T0 + 21))
    ok(core.command(start_cmd(), T0 + 30))
    ok(core.command(stop_cmd(), T0 + 60))
    ok(core.command(override_cmd("early_discharge"), T0 + 61))
    ok(core.command(override_cmd("discharge_without_vitals"), T0 + 61))  # no HR, no SpO2
    ok(core.command(discharge_cmd(), T0 + 62))

    # the next patient: the gate fires again and needs its own override
    ok(core.command(open_cmd(), T0 + 100))
    core.samples(nibp(T0 + 110, 150.0, 95.0) + nibp(T0 + 120, 150.0, 95.0))
    refused(core, start_cmd(), T0 + 130, mentions="BP_PRE_GATE")


def test_override_does_not_outlive_its_session(core: BedCore) -> None:
    # An override recorded for one patient must not unlock a gate for the next one.
    ok(core.command(open_cmd(), T0))
    core.samples(nibp(T0 + 1, 150.0, 95.0) + nibp(T0 + 2, 150.0, 95.0))
    ok(core.command(override_cmd("bp_pre_gate"), T0 + 5))
    events = core.samples(nibp(T0 + 6, 120.0, 80.0))  # the gate opens before the start
    assert ("BP_PRE_GATE", AlarmState.CLEARED) in [(e.code, e.state) for e in events]
    ok(core.command(start_cmd(), T0 + 10))
    unused = core.session_state(T0 + 10)["session"]["overrides"]
    assert [(o["what"], o["let_through"]) for o in unused] == [("bp_pre_gate", None)]
    ok(core.command(stop_cmd(), T0 + 20))
    ok(core.command(override_cmd("early_discharge"), T0 + 21))
    ok(core.command(discharge_cmd(), T0 + 22))

    ok(core.command(open_cmd(), T0 + 100))
    core.samples(nibp(T0 + 110, 150.0, 95.0) + nibp(T0 + 120, 150.0, 95.0))
    refused(core, start_cmd(), T0 + 130, mentions="BP_PRE_GATE")


# ---------------------------------------------------------------- discharge


def test_discharge_refused_before_120_min(core: BedCore) -> None:
    to_post(core)
    observe(core, STOP + 119 * 60)
    refused(core, discharge_cmd(), STOP + 119 * 60, mentions="observation")
    observe(core, STOP + 7200)
    core.tick(STOP + 7200)
    ok(core.command(discharge_cmd(), STOP + 7200))
    assert phase_of(core) is Phase.NONE
    assert core.session is None
    state = core.session_state(STOP + 7201)
    assert state["phase"] == "none"
    assert state.get("session") is None


def test_early_discharge_with_override(core: BedCore) -> None:
    to_post(core)
    observe(core, STOP + 1800)
    ok(core.command(override_cmd("early_discharge", "transferred to ward"), STOP + 1800))
    ok(core.command(discharge_cmd(), STOP + 1800))
    assert phase_of(core) is Phase.NONE


def test_discharge_refused_while_not_ready(core: BedCore) -> None:
    # HR 110 at the end: outside +-20 % of HR0 = 70 (> 84), DISCHARGE_NOT_READY at stop + 7200
    to_post(core, last_hr=110.0)
    events = observe(core, STOP + 7300, hr=110.0) + core.tick(STOP + 7300)
    assert ("DISCHARGE_NOT_READY", AlarmState.ACTIVE) in [(e.code, e.state) for e in events]
    refused(core, discharge_cmd(), STOP + 7300, mentions="DISCHARGE_NOT_READY")

    ok(core.command(override_cmd("early_discharge", "HR 110 is her usual rate"), STOP + 7310))
    outcome = ok(core.command(discharge_cmd(), STOP + 7320))
    assert phase_of(core) is Phase.NONE
    # the advisory ends with the session
    assert ("DISCHARGE_NOT_READY", AlarmState.CLEARED) in [
        (e.code, e.state) for e in outcome.events
    ]
    assert core.active_alarms() == []


def test_discharge_allowed_once_vitals_are_back(core: BedCore) -> None:
    to_post(core, last_hr=110.0)
    core.tick(STOP + 7200)
    assert "DISCHARGE_NOT_READY" in [a["code"] for a in core.active_alarms()]
    # HR back to 70 and a determination in band clear it (docs/ALARMS.md Reading 11)
    events = core.samples(
        ordered(hr_spo2(STOP + 7300, STOP + 7330, 70.0, 98.0) + nibp(STOP + 7330, 122.0, 80.0))
    )
    assert ("DISCHARGE_NOT_READY", AlarmState.CLEARED) in [(e.code, e.state) for e in events]
    ok(core.command(discharge_cmd(), STOP + 7340))


def test_discharge_sees_the_120_min_check_even_between_ticks(core: BedCore) -> None:
    # The discharge check is due at stop + 7200 s (docs/ALARMS.md Reading 11). A discharge command
    # ten seconds later must be judged on the state at its own time, whether or not the daemon's
    # tick for stop + 7200 happened to run first.
    to_post(core, last_hr=110.0)
    outcome = core.command(discharge_cmd(), STOP + 7210)
    assert not outcome.ok
    assert outcome.error is not None
    assert "DISCHARGE_NOT_READY" in outcome.error
    assert phase_of(core) is Phase.POST


# ---------------------------------------------------------------- alarms, ack, stamping


def alarms_scene(core: BedCore) -> list[AlarmEvent]:
    """pre with BP_PRE_GATE (medium, T0+20), HR_NO_DATA (low, T0+30), DESAT_CRITICAL (high)."""
    ok(core.command(open_cmd(), T0))
    rows = nibp(T0 + 10, 150.0, 95.0) + nibp(T0 + 20, 150.0, 95.0)
    rows += [Sample(T0 + 40 + i, Param.SPO2, 80.0, True, "mon1") for i in range(11)]
    return core.samples(ordered(rows))


def test_active_alarms_highest_priority_first(core: BedCore) -> None:
    events = alarms_scene(core)
    activated = [e.code for e in events if e.state is AlarmState.ACTIVE]
    # activation order is medium, low, low, high
    assert activated == ["BP_PRE_GATE", "SPO2_NO_DATA", "HR_NO_DATA", "DESAT_CRITICAL"]
    active = core.active_alarms()
    assert [a["code"] for a in active] == ["DESAT_CRITICAL", "BP_PRE_GATE", "HR_NO_DATA"]
    assert [a["priority"] for a in active] == ["high", "medium", "low"]
    ids = {e.code: e.alarm_id for e in events if e.state is AlarmState.ACTIVE}
    for a in active:
        assert a["alarm_id"] == ids[a["code"]]
        assert a["state"] == "active"
    json.dumps(active)  # the retained …/alarms/active payload must be JSON


def test_ack_of_an_active_alarm(core: BedCore) -> None:
    events = alarms_scene(core)
    desat = next(e for e in events if e.code == "DESAT_CRITICAL")
    assert desat.alarm_id is not None
    outcome = ok(core.command(ack_cmd(desat.alarm_id, user="nurse.ana"), T0 + 55))
    assert len(outcome.events) == 1
    ack = outcome.events[0]
    assert (ack.code, ack.state, ack.user) == (
        "DESAT_CRITICAL",
        AlarmState.ACKNOWLEDGED,
        "nurse.ana",
    )
    assert ack.alarm_id == desat.alarm_id
    assert desat.seq is not None
    assert ack.seq is not None
    assert ack.seq > desat.seq
    states = {a["code"]: a["state"] for a in core.active_alarms()}
    assert states["DESAT_CRITICAL"] == "acknowledged"
    # acknowledging twice changes nothing
    refused(core, ack_cmd(desat.alarm_id), T0 + 56)


@pytest.mark.parametrize("alarm_id", ["w1/b3/DESAT_CRITICAL/0", "DESAT_CRITICAL", "nope"])
def test_ack_of_an_unknown_alarm_is_refused(core: BedCore, alarm_id: str) -> None:
    alarms_scene(core)
    refused(core, ack_cmd(alarm_id), T0 + 55)


def test_ack_of_a_cleared_alarm_is_refused(core: BedCore) -> None:
    events = alarms_scene(core)
    no_data = next(e for e in events if e.code == "SPO2_NO_DATA" and e.state is AlarmState.ACTIVE)
    assert any(e.code == "SPO2_NO_DATA" and e.state is AlarmState.CLEARED for e in events)
    assert no_data.alarm_id is not None
    refused(core, ack_cmd(no_data.alarm_id), T0 + 55)


def test_events_are_stamped_for_the_ward(core: BedCore) -> None:
    events = alarms_scene(core)
    sid = session_id(core)
    desat = next(e for e in events if e.code == "DESAT_CRITICAL")
    assert desat.alarm_id is not None
    # unacknowledged high alarm: escalates every 60 s
    events += core.samples([Sample(T0 + 51 + i, Param.SPO2, 80.0, True, "mon1") for i in range(60)])
    events += core.tick(T0 + 115)
    events += ok(core.command(ack_cmd(desat.alarm_id), T0 + 116)).events
    # condition ends; acknowledged latched alarm clears once SpO2 is back
    events += core.samples(
        [Sample(T0 + 117 + i, Param.SPO2, 97.0, True, "mon1") for i in range(10)]
    )
    events += ok(core.command(override_cmd("bp_pre_gate"), T0 + 130)).events
    events += ok(core.command(start_cmd(), T0 + 131)).events

    desat_states = [e.state for e in events if e.code == "DESAT_CRITICAL"]
    assert desat_states[0] is AlarmState.ACTIVE
    assert AlarmState.ESCALATED in desat_states
    assert AlarmState.ACKNOWLEDGED in desat_states
    assert desat_states[-1] is AlarmState.CLEARED
    assert {e.alarm_id for e in events if e.code == "DESAT_CRITICAL"} == {desat.alarm_id}

    for e in events:
        assert e.bed == "w1/b3"
        assert e.session_id == sid
        assert e.alarm_id
        out = e.to_json()
        assert {"bed", "alarm_id", "session_id", "seq"} <= set(out)
    seqs = [e.seq for e in events if e.seq is not None]
    assert len(seqs) == len(events)
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    assert seqs[0] == 1
    assert core.seq == seqs[-1]

    # one alarm: one id; different alarms (or a re-activation): different ids
    ids_by_code: dict[str, set[str | None]] = {}
    for e in events:
        ids_by_code.setdefault(e.code, set()).add(e.alarm_id)
    assert all(len(ids) == 1 for ids in ids_by_code.values())
    assert len({next(iter(v)) for v in ids_by_code.values()}) == len(ids_by_code)


def test_a_new_activation_gets_a_new_alarm_id(core: BedCore) -> None:
    ok(core.command(open_cmd(), T0))
    first = core.tick(T0 + 30)  # no HR, no SpO2 for 30 s
    spo2_first = [e for e in first if e.code == "SPO2_NO_DATA"]
    assert [e.state for e in spo2_first] == [AlarmState.ACTIVE]
    back = core.samples([Sample(T0 + 31, Param.SPO2, 98.0, True, "mon1")])
    cleared = [e for e in back if e.code == "SPO2_NO_DATA"]
    assert [e.state for e in cleared] == [AlarmState.CLEARED]
    assert cleared[0].alarm_id == spo2_first[0].alarm_id
    again = [e for e in core.tick(T0 + 61) if e.code == "SPO2_NO_DATA"]
    assert [e.state for e in again] == [AlarmState.ACTIVE]
    assert again[0].alarm_id != spo2_first[0].alarm_id
    assert spo2_first[0].alarm_id is not None
    refused(core, ack_cmd(spo2_first[0].alarm_id), T0 + 62)


def test_seq_continues_from_a_given_start(policy: Policy) -> None:
    core = BedCore(policy, ward="w2", bed="b9", seq=41)
    ok(core.command(open_cmd(), T0))
    events = core.samples(nibp(T0 + 10, 150.0, 95.0) + nibp(T0 + 20, 150.0, 95.0))
    assert [e.seq for e in events] == [42]
    assert events[0].bed == "w2/b9"


def test_events_at_discharge_carry_the_session_that_ended(core: BedCore) -> None:
    to_post(core, last_hr=110.0)
    sid = session_id(core)
    observe(core, STOP + 7300, hr=110.0)
    ok(core.command(override_cmd("early_discharge"), STOP + 7300))
    outcome = ok(core.command(discharge_cmd(), STOP + 7300))
    assert outcome.events
    assert {e.session_id for e in outcome.events} == {sid}


def test_refused_command_does_not_advance_seq(core: BedCore) -> None:
    alarms_scene(core)
    seq = core.seq
    refused(core, start_cmd(), T0 + 60, mentions="BP_PRE_GATE")
    refused(core, ack_cmd("nope"), T0 + 61)
    refused(core, stop_cmd(), T0 + 62)
    assert core.seq == seq


# ---------------------------------------------------------------- the smaller commands


def test_audio_pause_lasts_the_policy_time(core: BedCore) -> None:
    outcome = ok(core.command(AudioPause(cmd="audio_pause", request_id="r", user=NURSE), T0))
    assert outcome.detail == {"audio_paused_until": T0 + 120.0}  # docs/ALARMS.md: 120 s
    assert core.session_state(T0 + 1)["audio_paused_until"] == T0 + 120.0


def test_record_score_needs_a_session_and_records_who(core: BedCore) -> None:
    score = RecordScore(cmd="record_score", request_id="r", user=NURSE, scale="PCL-5", value=51.0)
    refused(core, score, T0)
    ok(core.command(open_cmd(), T0))
    ok(core.command(score, T0 + 5))
    scores: list[dict[str, Any]] = core.session_state(T0 + 5)["session"]["scores"]
    assert scores == [{"scale": "PCL-5", "value": 51.0, "t": T0 + 5, "user": NURSE}]


def test_the_session_id_is_the_same_when_the_journal_is_replayed(core: BedCore) -> None:
    # recovery replays open_session: the id must come out the same, and differ per session
    ok(core.command(open_cmd(70.0, 10.0), T0))
    again = BedCore(core.policy, ward="w1", bed="b3")
    ok(again.command(open_cmd(70.0, 10.0), T0))
    other = BedCore(core.policy, ward="w1", bed="b3")
    ok(other.command(open_cmd(70.0, 10.0), T0 + 1))
    assert core.session is not None
    assert again.session is not None
    assert other.session is not None
    assert core.session.session_id == again.session.session_id
    assert other.session.session_id != core.session.session_id


# ---------------------------------------------------------------- issue 11: overrides (item 10)


def in_pre_with_the_gate(core: BedCore) -> None:
    ok(core.command(open_cmd(), T0))
    core.samples(nibp(T0 + 10, 150.0, 95.0) + nibp(T0 + 20, 150.0, 95.0))


def in_pre(core: BedCore) -> None:
    pre_phase(core)


def in_post(core: BedCore) -> None:
    to_post(core)
    observe(core, STOP + 600)


def ready_to_leave(core: BedCore) -> None:
    to_post(core)
    observe(core, STOP + 7300)
    core.tick(STOP + 7300)


@pytest.mark.parametrize(
    ("scene", "now", "what", "why"),
    [
        (in_post, STOP + 600, "bp_pre_gate", "BP_PRE_GATE gates start_infusion in phase pre"),
        (in_pre, START - 1, "bp_pre_gate", "BP_PRE_GATE is not active"),
        (in_pre_with_the_gate, T0 + 30, "early_discharge", "phase post"),
        (in_pre_with_the_gate, T0 + 30, "discharge_without_vitals", "phase post"),
        (in_pre_with_the_gate, T0 + 30, "relative_contraindication", "one is open"),
        (in_post, STOP + 600, "discharge_without_vitals", "not blocked"),
        (ready_to_leave, STOP + 7300, "early_discharge", "not blocked"),
    ],
)
def test_an_override_with_nothing_to_override_is_refused(
    core: BedCore, scene: Any, now: float, what: OverrideWhat, why: str
) -> None:
    scene(core)
    outcome = refused(core, override_cmd(what), now, mentions="nothing to override")
    assert outcome.error is not None
    assert why in outcome.error
    state = core.session_state(now)
    assert state["session"]["overrides"] == []
    assert state["pending_overrides"] == []


def test_a_second_override_of_the_same_gate_is_refused(core: BedCore) -> None:
    in_pre_with_the_gate(core)
    ok(core.command(override_cmd("bp_pre_gate", "rechecked"), T0 + 25))
    refused(core, override_cmd("bp_pre_gate", "again"), T0 + 26, mentions="already overridden")


def test_overrides_record_what_they_let_through(core: BedCore) -> None:
    in_pre_with_the_gate(core)
    ok(core.command(override_cmd("bp_pre_gate", "white coat"), T0 + 25))
    ok(core.command(start_cmd(), T0 + 30))
    stop = T0 + 30 + 2400
    ok(core.command(stop_cmd(), stop))
    ok(core.command(override_cmd("early_discharge", "transfer"), stop + 60))
    overrides = core.session_state(stop + 60)["session"]["overrides"]
    assert [(o["what"], o["user"], o["reason"], o["t"]) for o in overrides] == [
        ("bp_pre_gate", DOCTOR, "white coat", T0 + 25),
        ("early_discharge", DOCTOR, "transfer", stop + 60),
    ]
    assert overrides[1]["overrode"] == "observation 1 min < 120 min"
    assert overrides[1]["let_through"] is None  # not used yet
    # the last determination (T0+20) is 41.7 min old at the discharge: vitals are needed too
    refused(core, discharge_cmd(), stop + 70, mentions="override what=discharge_without_vitals")
    ok(core.command(override_cmd("discharge_without_vitals", "portable monitor"), stop + 80))
    session = core.session
    ok(core.command(discharge_cmd(), stop + 90))
    assert session is not None
    used = {o.what: (o.let_through, o.let_through_t) for o in session.overrides}
    assert used["bp_pre_gate"] == ("start_infusion with BP_PRE_GATE active", T0 + 30)
    assert used["early_discharge"] == ("discharge with observation 2 min < 120 min", stop + 90)
    let_through, t = used["discharge_without_vitals"]
    assert t == stop + 90
    assert let_through is not None
    assert "SPO2_NO_DATA is active" in let_through
    assert "HR_NO_DATA is active" in let_through
    assert "the latest valid cuff determination is 42 min old (> 20 min)" in let_through


# ---------------------------------------------------------------- issue 11: discharge (item 11)


def test_discharge_refused_while_spo2_and_hr_have_no_data(core: BedCore) -> None:
    # the monitors went away 10 min before the discharge check: no HR, no SpO2
    to_post(core)
    observe(core, STOP + 6600)
    core.tick(STOP + 7300)
    active = {a["code"] for a in core.active_alarms()}
    assert {"SPO2_NO_DATA", "HR_NO_DATA"} <= active
    outcome = refused(core, discharge_cmd(), STOP + 7300, mentions="discharge_without_vitals")
    assert outcome.error is not None
    assert "SPO2_NO_DATA is active" in outcome.error
    assert "HR_NO_DATA is active" in outcome.error
    assert "early_discharge" not in outcome.error  # 120 min are over
    ok(
        core.command(
            override_cmd("discharge_without_vitals", "monitor moved to bed 4"), STOP + 7310
        )
    )
    ok(core.command(discharge_cmd(), STOP + 7320))
    assert phase_of(core) is Phase.NONE


def cuff_stops_at_105_min(core: BedCore) -> float:
    """HR and SpO2 flow to STOP+7500; the last determination is the 105 min one: its time."""
    to_post(core)
    core.samples(
        ordered(
            hr_spo2(STOP + 1, STOP + 7500, 70.0, 97.0)
            + [s for k in range(1, 8) for s in nibp(STOP + 900 * k - 30, 122.0, 80.0)]
        )
    )
    return STOP + 900 * 7 - 30


def test_discharge_refused_when_the_last_determination_is_over_20_min_old(
    core: BedCore,
) -> None:
    last = cuff_stops_at_105_min(core)
    outcome = refused(core, discharge_cmd(), last + 1201)
    assert outcome.error == (
        "the latest valid cuff determination is 20 min old (> 20 min): "
        "needs a clinician override (override what=discharge_without_vitals)"
    )
    ok(
        core.command(
            override_cmd("discharge_without_vitals", "cuff failed, manual 120/80"), last + 1210
        )
    )
    ok(core.command(discharge_cmd(), last + 1220))


def test_discharge_at_exactly_20_min_after_the_determination(core: BedCore) -> None:
    last = cuff_stops_at_105_min(core)
    assert last + 1200 - STOP >= 7200  # the observation time is over: only the cuff counts
    ok(core.command(discharge_cmd(), last + 1200))


def test_discharge_refused_without_any_determination_in_the_session(core: BedCore) -> None:
    # a determination of the previous patient does not count for this one
    core.samples(nibp(T0 - 600, 120.0, 80.0))
    ok(core.command(open_cmd(), T0))
    ok(core.command(start_cmd(), START))
    ok(core.command(stop_cmd(), STOP))
    core.samples(hr_spo2(START, STOP + 7300, 70.0, 97.0))
    outcome = refused(core, discharge_cmd(), STOP + 7300)
    assert outcome.error is not None
    assert outcome.error.startswith("no valid cuff determination in this session")


def test_discharge_refused_until_a_latched_alarm_is_acknowledged(core: BedCore) -> None:
    to_post(core)
    # SpO2 at 80 % for 10 s at 60 min of observation: DESAT_CRITICAL latches
    dip = STOP + 3600
    rows = hr_spo2(STOP + 1, dip, 70.0, 97.0)
    rows += [Sample(dip + i, Param.SPO2, 80.0, True, "mon1") for i in range(10)]
    rows += [Sample(dip + i, Param.HR, 70.0, True, "mon1") for i in range(10)]
    rows += hr_spo2(dip + 10, STOP + 7300, 70.0, 97.0)
    rows += [s for k in range(1, 9) for s in nibp(STOP + 900 * k - 30, 122.0, 80.0)]
    core.samples(ordered(rows))
    core.tick(STOP + 7300)
    latched = [a for a in core.active_alarms() if a["latched"]]
    assert [a["code"] for a in latched] == ["DESAT_CRITICAL"]
    outcome = refused(core, discharge_cmd(), STOP + 7300, mentions="acknowledge it first")
    assert outcome.error is not None
    assert outcome.error.startswith("DESAT_CRITICAL latched and not acknowledged")
    # no override opens this gate: there is nothing for one to override
    refused(core, override_cmd("early_discharge"), STOP + 7301, mentions="nothing to override")
    refused(core, override_cmd("discharge_without_vitals"), STOP + 7301, mentions="nothing")
    ok(core.command(ack_code("DESAT_CRITICAL"), STOP + 7302))
    ok(core.command(discharge_cmd(), STOP + 7303))
    assert phase_of(core) is Phase.NONE


# ---------------------------------------------------------------- issue 11: ack by code (item 8)


def test_ack_by_code_acknowledges_the_active_alarm_of_that_code(core: BedCore) -> None:
    events = alarms_scene(core)
    desat = next(e for e in events if e.code == "DESAT_CRITICAL")
    outcome = ok(core.command(ack_code("DESAT_CRITICAL", user="nurse.ana"), T0 + 55))
    assert [(e.code, e.state, e.user, e.alarm_id) for e in outcome.events] == [
        ("DESAT_CRITICAL", AlarmState.ACKNOWLEDGED, "nurse.ana", desat.alarm_id)
    ]
    refused(core, ack_code("DESAT_CRITICAL"), T0 + 56, mentions="already acknowledged")


def test_ack_by_a_code_with_no_active_alarm_is_refused(core: BedCore) -> None:
    alarms_scene(core)
    outcome = refused(core, ack_code("BP_CRISIS"), T0 + 55)
    assert outcome.error is not None
    assert outcome.error.startswith("no active alarm with code 'BP_CRISIS' (active: ")
    for code in ("DESAT_CRITICAL", "BP_PRE_GATE", "HR_NO_DATA"):
        assert code in outcome.error


def test_an_override_given_before_the_open_is_in_the_payload_until_used(core: BedCore) -> None:
    ok(core.command(override_cmd("relative_contraindication", "safety plan agreed"), T0))
    pending = core.session_state(T0)["pending_overrides"]
    assert [(o["what"], o["user"], o["reason"], o["t"]) for o in pending] == [
        ("relative_contraindication", DOCTOR, "safety plan agreed", T0)
    ]
    ok(core.command(open_cmd(checks={"pregnancy": True}), T0 + 5))
    state = core.session_state(T0 + 5)
    assert state["pending_overrides"] == []
    [used] = state["session"]["overrides"]
    assert (used["let_through"], used["let_through_t"]) == ("open_session with pregnancy", T0 + 5)
