"""PCD-01 and PCD-04 as built: golden files written by hand from the profile, and validation."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import pytest

from kernel.vocabulary import AlarmKind, Param, Priority
from monitor.hl7.messages import (
    METRICS,
    BedContext,
    Header,
    Metric,
    alarm_message,
    escape,
    eui64,
    hl7_time,
    state_message,
    vitals_message,
)
from monitor.wire import WireActiveAlarm, WireAlarmEvent
from tests.monitor.hl7.conformance import validate

DATA = Path(__file__).parents[2] / "data" / "hl7"
HEADER = Header(
    application="VIGIL",
    facility="CLINIC",
    receiving_application="EHR",
    receiving_facility="HOSP",
    gateway_eui64="0012AB00000000C1",
)
BED = BedContext(ward="w1", bed="b3", patient_id="MRN12345")
T = 1736850600.0  # 2025-01-14T10:30:00Z


def golden(name: str) -> str:
    # the files keep one segment a line for reading; HL7 separates segments with CR
    return "\r".join((DATA / name).read_text().splitlines())


def vitals() -> list[Metric]:
    return [
        Metric(Param.HR, 72.0, T - 5, "mon1"),
        Metric(Param.SPO2, 97.0, T - 5, "mon1"),
        Metric(Param.PR, None, T - 5, "mon1"),  # invalid: reported without a number
        Metric(Param.RR, 14.5, T - 5, "mon1"),
        # the determination keeps its own time, 1 min 50 s before the report
        Metric(Param.NIBP_SYS, 118.0, T - 110, "nibp1"),
        Metric(Param.NIBP_DIA, 76.0, T - 110, "nibp1"),
        Metric(Param.NIBP_MEAN, 90.0, T - 110, "nibp1"),
    ]


def event(**over: object) -> WireAlarmEvent:
    fields: dict[str, object] = {
        "t": T + 310,
        "code": "DESAT",
        "priority": "medium",
        "kind": "physiological",
        "state": "active",
        "param": "SPO2",
        "value": 89.0,
        "limit": 92.0,
        "phase": "infusion",
        "message": "SpO2 89 % below 92 %",
        "bed": "b3",
        "alarm_id": "a1b2c3d4",
        "session_id": "s1",
        "seq": 17,
    }
    fields.update(over)
    return WireAlarmEvent.model_validate(fields)


def test_pcd01_matches_the_golden_file_and_validates() -> None:
    text = vitals_message(HEADER, BED, vitals(), control_id="V0000000100000000042", now=T)
    assert text == golden("pcd01_vitals.hl7")
    validate(text)


def test_pcd04_matches_the_golden_files_and_validates() -> None:
    text = alarm_message(HEADER, BED, event(), control_id="V0000000100000000043", now=T + 312)
    assert text == golden("pcd04_alarm_start.hl7")
    validate(text)
    technical = event(
        t=T + 358,
        code="DEVICE_DISCONNECTED",
        priority="high",
        kind="technical",
        state="acknowledged",
        param=None,
        value=None,
        limit=None,
        message="spo2 & pulse: no data",
        alarm_id="e5f6",
        seq=18,
    )
    unknown = BedContext(ward="w1", bed="b3", patient_id=None)
    text = alarm_message(HEADER, unknown, technical, control_id="V0000000100000000044", now=T + 360)
    assert text == golden("pcd04_technical_ack.hl7")
    validate(text)


def test_pcd04_latched_matches_the_golden_file_and_validates() -> None:
    # DESAT_SEVERE latches (config/alarms.toml), raised at SpO2 84 (< 88, side L); its
    # condition ended at T + 400 and it waits for acknowledgement: no alarm event, the bed's
    # active list says `latched` (docs/ALARMS.md "States"). The update keeps the start's
    # identification (LO, `>88`); the list has no reading of that moment, so the source row
    # has none, and no `seq` (that numbers the bed's events): OBR-3 `a9b8^^…`.
    alarm = WireActiveAlarm.model_validate(
        {
            "alarm_id": "a9b8", "code": "DESAT_SEVERE", "priority": "high",
            "kind": "physiological", "state": "active", "since": T + 300, "param": "SPO2",
            "value": 84.0, "limit": 88.0, "level": 1, "latched": True, "latched_t": T + 400,
        }
    )  # fmt: skip
    text = state_message(
        HEADER, BED, alarm, t=T + 400, latched=True, control_id="V0000000100000000045", now=T + 401
    )
    assert text == golden("pcd04_latched.hl7")
    validate(text)
    # its condition holds again: the same update with the state `active`
    again = state_message(
        HEADER, BED, alarm, t=T + 400, latched=False, control_id="V0000000100000000045", now=T + 401
    )
    assert again == text.replace("|latched|", "|active|")
    validate(again)


def test_a_latched_alarm_stays_latched_in_its_later_messages() -> None:
    # an escalation and the acknowledgement of an alarm the active list shows latched
    for state, inactivation in (("escalated", "enabled"), ("acknowledged", "alert-acknowledged")):
        text = alarm_message(HEADER, BED, event(state=state), control_id="C", now=T, latched=True)
        validate(text)
        assert [r[5] for r in obx(text)[3:5]] == ["latched", inactivation]
    cleared = alarm_message(
        HEADER, BED, event(state="cleared"), control_id="C", now=T, latched=True
    )
    assert obx(cleared)[3][5] == "inactive"


def obx(text: str) -> list[list[str]]:
    return [s.split("|") for s in text.split("\r") if s.startswith("OBX")]


@pytest.mark.parametrize(
    ("state", "phase", "alarm_state", "inactivation"),
    [
        ("active", "start", "active", "enabled"),
        ("acknowledged", "update", "active", "alert-acknowledged"),
        ("escalated", "escalate", "active", "enabled"),
        ("cleared", "end", "inactive", "enabled"),
    ],
)
def test_vigil_states_map_onto_phase_state_and_inactivation(
    state: str, phase: str, alarm_state: str, inactivation: str
) -> None:
    text = alarm_message(HEADER, BED, event(state=state), control_id="C1", now=T)
    validate(text)
    rows = obx(text)
    assert [r[5] for r in rows[2:5]] == [phase, alarm_state, inactivation]
    # the identity and the update count travel in OBR-3
    obr = next(s.split("|") for s in text.split("\r") if s.startswith("OBR"))
    assert obr[3].split("^")[:2] == ["a1b2c3d4", "17"]


def test_audio_pause_is_the_inactivation_state_of_an_unacknowledged_alarm() -> None:
    paused = alarm_message(HEADER, BED, event(), control_id="C", now=T, audio_paused=True)
    assert obx(paused)[4][5] == "audio-paused"
    acked = alarm_message(
        HEADER, BED, event(state="acknowledged"), control_id="C", now=T, audio_paused=True
    )
    assert obx(acked)[4][5] == "alert-acknowledged"


@pytest.mark.parametrize(
    ("priority", "kind"), list(itertools.product(list(Priority), list(AlarmKind)))
)
def test_priority_and_type_facets(priority: Priority, kind: AlarmKind) -> None:
    text = alarm_message(HEADER, BED, event(priority=priority, kind=kind), control_id="C", now=T)
    validate(text)
    rows = obx(text)
    expected_priority = {"high": "PH", "medium": "PM", "low": "PL"}[priority.value]
    expected_type = {"physiological": "SP", "technical": "ST", "advisory": "SA"}[kind.value]
    assert (rows[5][3].split("^")[0], rows[5][5]) == ("68484", expected_priority)
    assert (rows[6][3].split("^")[0], rows[6][5]) == ("68485", expected_type)
    assert rows[0][8] == f"L~{expected_priority}~{expected_type}"


def test_a_high_value_is_the_high_limit_event_and_its_range_is_below_the_limit() -> None:
    text = alarm_message(
        HEADER,
        BED,
        event(code="TACHY", param="HR", value=131.0, limit=120.0),
        control_id="C",
        now=T,
    )
    validate(text)
    rows = obx(text)
    assert rows[0][3] == "196650^MDC_EVT_HI_VAL_GT_LIM^MDC"
    assert rows[0][4] == "1.1.1.1.1"
    assert (rows[1][3], rows[1][5], rows[1][7], rows[1][8]) == (
        "147842^MDC_ECG_HEART_RATE^MDC",
        "131",
        "<120",
        "H",
    )


def test_an_alarm_without_a_value_sends_no_number() -> None:
    text = alarm_message(
        HEADER, BED, event(code="SPO2_NO_DATA", value=None, limit=None), control_id="C", now=T
    )
    validate(text)
    source = obx(text)[1]
    assert (source[2], source[5], source[6]) == ("", "", "")


@pytest.mark.parametrize("param", sorted(METRICS))
def test_every_parameter_alone_validates_with_its_code_and_unit(param: Param) -> None:
    text = vitals_message(HEADER, BED, [Metric(param, 61.0, T - 1, "mon1")], control_id="C", now=T)
    validate(text)
    row = obx(text)[-1]
    code, unit = row[3].split("^")[0], row[6].split("^")[0]
    # issue 16 and IEEE 11073-10101 (reference tables; not read from the code under test)
    expected = {
        Param.HR: ("147842", "264864"),
        Param.PR: ("149530", "264864"),
        Param.SPO2: ("150456", "262688"),
        Param.NIBP_SYS: ("150021", "266016"),
        Param.NIBP_DIA: ("150022", "266016"),
        Param.NIBP_MEAN: ("150023", "266016"),
        Param.ABP_SYS: ("150037", "266016"),
        Param.ABP_DIA: ("150038", "266016"),
        Param.ABP_MEAN: ("150039", "266016"),
        Param.RR: ("151562", "264928"),
    }[param]
    assert (code, unit) == expected
    assert row[11] == "R"
    assert row[14] == "20250114102959+0000"


def test_nan_and_infinite_values_are_not_numbers() -> None:
    for bad in (float("nan"), float("inf")):
        text = vitals_message(HEADER, BED, [Metric(Param.HR, bad, T, "m")], control_id="C", now=T)
        validate(text)
        row = obx(text)[-1]
        assert (row[2], row[5], row[11]) == ("", "", "X")


def test_text_with_delimiters_is_escaped_and_still_validates() -> None:
    nasty = BedContext(ward="w1", bed="b3", patient_id="A|B^C~D\\E&F")
    text = alarm_message(
        HEADER, nasty, event(code="X_Y", param=None, message="a|b\nc"), control_id="C", now=T
    )
    validate(text)
    assert "A\\F\\B\\S\\C\\R\\D\\E\\E\\T\\F^^^CLINIC^MR" in text
    assert escape("x\r\ny") == "x y"


def test_no_reportable_observation_is_refused() -> None:
    with pytest.raises(ValueError, match="no observation"):
        vitals_message(HEADER, BED, [Metric(Param.ETCO2, 35.0, T, "m")], control_id="C", now=T)


def test_eui64_is_stable_local_and_unicast() -> None:
    digest = bytearray(hashlib.sha256(b"bed:w1/b3").digest()[:8])
    digest[0] = (digest[0] | 0x02) & 0xFE
    assert eui64("bed:w1/b3") == digest.hex().upper() == BED.eui64
    assert int(eui64("x")[:2], 16) & 0x03 == 0x02


def test_hl7_time_is_utc_with_its_offset() -> None:
    assert hl7_time(T) == "20250114103000+0000"
    assert hl7_time(T + 0.25) == "20250114103000.250+0000"
