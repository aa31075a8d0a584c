"""monitor/wire.py reads what the bed publishes: its own producers' payloads, and bad ones."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from alarms.policy import load_policy
from kernel.vocabulary import AlarmEvent, AlarmKind, AlarmState, Param, Phase, Priority, Sample
from monitor.commands import Ack, Checklist, parse_command
from monitor.session import BedCore
from monitor.wire import (
    WireAlarmEvent,
    WireError,
    WireSample,
    WireStatus,
    bed_prefix,
    decode_active_alarms,
    decode_alarm_event,
    decode_command,
    decode_command_result,
    decode_sample,
    decode_session,
    decode_status,
    encode_active_alarms,
    encode_command,
    encode_command_result,
    encode_sample,
    encode_session,
    encode_status,
    parse_topic,
    topic_filters,
)


def test_a_sample_as_the_bed_publishes_it() -> None:
    sample = Sample(1.5, Param.SPO2, 97.0, True, "mon1", unit="%", mdc=150456, reason=None)
    wire = decode_sample(json.dumps({**sample.to_json(), "vendor": "x"}).encode())
    assert (wire.t, wire.param, wire.value, wire.number, wire.unit, wire.mdc) == (
        1.5, Param.SPO2, 97.0, 97.0, "%", 150456,
    )  # fmt: skip
    assert wire.model_extra == {"vendor": "x"}
    invalid = Sample(2.0, Param.HR, math.nan, False, "mon1", reason="sensor off")
    wire = decode_sample(json.dumps(invalid.to_json()))
    assert (wire.value, wire.number, wire.valid, wire.reason) == (None, None, False, "sensor off")


def test_an_alarm_event_as_the_bed_publishes_it() -> None:
    event = AlarmEvent(
        t=10.0, code="DESAT", priority=Priority.MEDIUM, kind=AlarmKind.PHYSIOLOGICAL,
        state=AlarmState.ACKNOWLEDGED, param="SPO2", value=89.0, limit=92.0,
        phase=Phase.INFUSION, message="low", user="ann", bed="b1", alarm_id="a1",
        session_id="s1", seq=7,
    )  # fmt: skip
    wire = decode_alarm_event(json.dumps(event.to_json()).encode())
    assert wire.state is AlarmState.ACKNOWLEDGED
    assert (wire.alarm_id, wire.seq, wire.user, wire.bed) == ("a1", 7, "ann", "b1")
    replayed = AlarmEvent(
        t=1.0, code="X", priority=Priority.LOW, kind=AlarmKind.TECHNICAL,
        state=AlarmState.CLEARED, param=None, value=None, limit=None, phase=Phase.NONE,
        message="",
    )  # fmt: skip
    assert decode_alarm_event(json.dumps(replayed.to_json())).seq is None


@pytest.mark.parametrize(
    ("core", "wire"), [(Sample, WireSample), (AlarmEvent, WireAlarmEvent)], ids=["sample", "event"]
)
def test_the_wire_model_names_every_field_of_the_cores_type_in_its_order(
    core: type[Sample | AlarmEvent], wire: type[WireSample | WireAlarmEvent]
) -> None:
    # The engine's frozen dataclasses and the readers' pydantic models are two declarations of
    # one payload (docs/ARCHITECTURE.md "Sample JSON", "Alarm event JSON"): a field added to
    # one and not the other would be published and dropped, or expected and never sent.
    assert [f.name for f in dataclasses.fields(core)] == list(wire.model_fields)


def test_the_session_payload_of_a_real_bed_core() -> None:
    core = BedCore(load_policy(), ward="w1", bed="b3")
    assert decode_session(json.dumps(core.session_state(5.0))).patient_id is None
    opening = {
        "cmd": "open_session", "request_id": "r", "user": "ann", "patient_id": "MRN9",
        "weight_kg": 70.0, "concentration_mg_per_ml": 10.0,
        "checklist": dict.fromkeys(Checklist.model_fields, False),
    }  # fmt: skip
    outcome = core.command(parse_command(json.dumps(opening).encode()), 6.0)
    assert outcome.ok, outcome.error
    wire = decode_session(json.dumps(core.session_state(7.0)))
    assert wire.phase is Phase.PRE
    assert wire.patient_id == "MRN9"
    assert wire.session is not None
    assert wire.session.weight_kg == 70.0


def test_the_active_alarm_list_of_a_real_bed_core() -> None:
    core = BedCore(load_policy(), ward="w1", bed="b3")
    assert decode_active_alarms(json.dumps(core.active_alarms())) == []
    t = 1_767_225_600.0
    for i in range(15):  # HR 150 for 15 s: TACHY_SEVERE (10 s) is active
        core.samples([Sample(t + i, Param.HR, 150.0, True, "mon1")])
        core.tick(t + i + 0.5)
    active = decode_active_alarms(json.dumps(core.active_alarms()).encode())
    assert "TACHY_SEVERE" in [a.code for a in active]
    assert all(a.state == "active" and a.since >= t for a in active)
    with pytest.raises(WireError, match="expected a JSON list"):
        decode_active_alarms(b"{}")
    with pytest.raises(WireError, match=r"active alarms\[0\]: priority"):
        decode_active_alarms(b'[{"code": "X", "kind": "technical", "state": "active", "since": 1}]')


def test_status_birth_will_and_bare_words() -> None:
    birth = {"status": "online", "ward": "w1", "bed": "b1", "version": "0.1", "devices": ["m"],
             "t": 1.0, "time": "x"}  # fmt: skip
    assert decode_status(json.dumps(birth)).devices == ["m"]
    assert decode_status(b"offline").status == "offline"
    assert decode_status(b'{"status": "OFFLINE", "ward": "w1"}').status == "offline"


@pytest.mark.parametrize(
    ("decode", "payload", "reason"),
    [
        (decode_sample, b"not json", "sample: not JSON"),
        (decode_sample, b"[]", "expected a JSON object, got list"),
        (decode_sample, b'{"t": 1, "param": "BLOOD", "value": 1, "valid": true, "device_id": "m"}',
         "param"),
        (decode_alarm_event, b'{"t": 1, "code": "X"}', "priority: Field required"),
        (decode_session, b'{"t": 1, "phase": "later"}', "phase"),
        (decode_status, b'{"status": "sleeping"}', "status"),
        (decode_sample, b"\xff\xfe", "not JSON"),
    ],
)  # fmt: skip
def test_bad_payloads_raise_wire_error_saying_why(
    decode: object, payload: bytes, reason: str
) -> None:
    assert callable(decode)
    with pytest.raises(WireError, match=reason):
        decode(payload)


def test_topics_under_a_configured_root() -> None:
    # docs/ARCHITECTURE.md "MQTT": `<root>/<ward>/<bed>/<kind>`; the root may have levels
    assert parse_topic("vigil/w1/b3/alarms/active") == ("w1", "b3", "alarms/active")
    assert parse_topic("site/a/w1/b3/cmd/result", "site/a") == ("w1", "b3", "cmd/result")
    assert parse_topic("site/a/w1/b3/vitals") is None  # another root
    assert parse_topic("vigil/w1/b3/other") is None
    assert parse_topic("vigil/w1/status") is None
    assert bed_prefix("w1", "b3", "site/a") == "site/a/w1/b3"
    assert topic_filters(["status"], ward="w1", root="site/a") == ["site/a/w1/+/status"]


def test_what_the_publisher_encodes_the_readers_decode() -> None:
    core = BedCore(load_policy(), ward="w1", bed="b3")
    session = decode_session(encode_session(core.session_state(1767225600.0)))
    assert (session.t, session.phase, session.session) == (1767225600.0, Phase.NONE, None)
    sample = Sample(3.0, Param.HR, 71.0, True, "mon1")
    assert decode_sample(encode_sample(sample)).number == 71.0
    birth = WireStatus(status="online", ward="w1", bed="b3", devices=["mon1"], t=5.0)
    assert decode_status(encode_status(birth)) == birth
    assert json.loads(encode_status(WireStatus(status="offline"))) == {"status": "offline"}
    result = decode_command_result(encode_command_result({"request_id": "r1", "ok": True}))
    assert (result.request_id, result.ok, result.error) == ("r1", True, None)
    ack = Ack(cmd="ack", request_id="r2", user="ann", code="BP_CRISIS")
    assert decode_command(encode_command(ack)) == ack
    assert decode_active_alarms(encode_active_alarms([])) == []


def test_a_console_can_skip_bad_active_alarm_entries() -> None:
    good = {"code": "TACHY", "priority": "medium", "kind": "physiological", "state": "active"}
    payload = json.dumps([{**good, "since": 1.0}, {"code": "X"}, 7]).encode()
    with pytest.raises(WireError, match=r"active alarms\[1\]"):
        decode_active_alarms(payload)
    skipped: list[str] = []
    (alarm,) = decode_active_alarms(payload, skip=skipped.append)
    assert alarm.code == "TACHY"
    assert len(skipped) == 2
    assert "active alarms[2]: expected a JSON object" in skipped[1]
