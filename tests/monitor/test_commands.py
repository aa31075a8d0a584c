"""Nurse commands on `…/cmd` (docs/ARCHITECTURE.md "MQTT"), parsed by monitor/commands.py.

A command either parses to its type or is refused with `CommandRejectedError` whose reason names
the field at fault; nothing else may escape, whatever bytes arrive.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernel import vocabulary
from monitor.commands import (
    Ack,
    AudioPause,
    Checklist,
    Command,
    CommandRejectedError,
    Discharge,
    OpenSession,
    Override,
    RecordScore,
    StartInfusion,
    StopInfusion,
    parse_command,
)
from tests.strategies import json_values

CHECKLIST_ITEMS = [
    "uncontrolled_hypertension",
    "severe_cardiovascular_disease",
    "raised_intracranial_pressure",
    "active_psychosis_or_mania",
    "substance_use_disorder",
    "severe_hepatic_impairment",
    "pregnancy",
    "suicidal_intent_without_safety_plan",
    "concomitant_cns_depressants",
]
CLEAR = dict.fromkeys(CHECKLIST_ITEMS, False)
COMMAND_NAMES = [
    "open_session",
    "start_infusion",
    "stop_infusion",
    "discharge",
    "override",
    "ack",
    "audio_pause",
    "record_score",
]


def payload(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def cmd(name: str, **fields: Any) -> dict[str, Any]:
    return {"cmd": name, "request_id": "req-1", "user": "nurse.kim", **fields}


def open_session(**fields: Any) -> dict[str, Any]:
    base = {
        "patient_id": "P-0042",
        "weight_kg": 70,
        "concentration_mg_per_ml": 10,
        "checklist": dict(CLEAR),
    }
    return cmd("open_session", **{**base, **fields})


VALID: dict[str, dict[str, Any]] = {
    "open_session": open_session(),
    "start_infusion": cmd("start_infusion"),
    "stop_infusion": cmd("stop_infusion"),
    "discharge": cmd("discharge"),
    "override": cmd("override", what="bp_pre_gate", reason="two readings at rest, 142/91"),
    "ack": cmd("ack", alarm_id="w1/b3/DESAT/1767225600000"),
    "audio_pause": cmd("audio_pause"),
    "record_score": cmd("record_score", scale="CADSS", value=12),
}


def rejected(obj: Any) -> CommandRejectedError:
    raw = obj if isinstance(obj, bytes) else payload(obj)
    with pytest.raises(CommandRejectedError) as info:
        parse_command(raw)
    assert info.value.reason.strip()
    return info.value


def fields_named(reason: str) -> list[str]:
    """The `field: message` heads of a reason (several are joined with '; ')."""
    return [part.split(":", 1)[0].strip() for part in reason.split("; ")]


# ---------------------------------------------------------------- valid commands


def test_every_command_of_the_contract_is_covered() -> None:
    assert sorted(VALID) == sorted(COMMAND_NAMES)


def test_open_session_parses() -> None:
    c = parse_command(payload(open_session(checklist={**CLEAR, "pregnancy": True})))
    assert isinstance(c, OpenSession)
    assert (c.request_id, c.user, c.patient_id) == ("req-1", "nurse.kim", "P-0042")
    assert c.weight_kg == 70.0
    assert c.concentration_mg_per_ml == 10.0
    assert isinstance(c.checklist, Checklist)
    assert c.checklist.pregnancy is True
    assert c.checklist.uncontrolled_hypertension is False


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("start_infusion", StartInfusion),
        ("stop_infusion", StopInfusion),
        ("discharge", Discharge),
        ("audio_pause", AudioPause),
    ],
)
def test_plain_commands_parse(name: str, kind: type[Any]) -> None:
    c = parse_command(payload(VALID[name]))
    assert type(c) is kind
    assert (c.cmd, c.request_id, c.user) == (name, "req-1", "nurse.kim")


@pytest.mark.parametrize(
    "what",
    ["bp_pre_gate", "early_discharge", "relative_contraindication", "discharge_without_vitals"],
)
def test_override_parses(what: str) -> None:
    c = parse_command(payload(cmd("override", what=what, reason="clinician decision")))
    assert isinstance(c, Override)
    assert (c.what, c.reason, c.user) == (what, "clinician decision", "nurse.kim")


def test_ack_parses() -> None:
    c = parse_command(payload(VALID["ack"]))
    assert isinstance(c, Ack)
    assert c.alarm_id == "w1/b3/DESAT/1767225600000"


def test_ack_by_code_parses() -> None:
    # issue 11 item 8: the code a nurse sees on the console, instead of the alarm_id
    c = parse_command(payload(cmd("ack", code="BP_CRISIS")))
    assert isinstance(c, Ack)
    assert (c.code, c.alarm_id) == ("BP_CRISIS", None)


@pytest.mark.parametrize(
    "fields",
    [{}, {"alarm_id": "w1/b3/DESAT/1767225600000", "code": "DESAT"}],
    ids=["neither", "both"],
)
def test_ack_needs_exactly_one_of_alarm_id_and_code(fields: dict[str, Any]) -> None:
    err = rejected(cmd("ack", **fields))
    assert err.reason == "(command): Value error, give exactly one of alarm_id and code"


@pytest.mark.parametrize("scale", ["CAPS-5", "PCL-5", "IES-R", "CADSS"])
def test_record_score_parses(scale: str) -> None:
    c = parse_command(payload(cmd("record_score", scale=scale, value=33.5)))
    assert isinstance(c, RecordScore)
    assert (c.scale, c.value) == (scale, 33.5)


def test_commands_are_read_as_utf8() -> None:
    c = parse_command(json.dumps(cmd("audio_pause", user="Søren Ødegård")).encode())
    assert c.user == "Søren Ødegård"


# ---------------------------------------------------------------- refusals


def test_unknown_command() -> None:
    err = rejected(cmd("sedate_patient"))
    assert fields_named(err.reason) == ["cmd"]
    assert "sedate_patient" in err.reason
    assert err.request_id == "req-1"


def test_missing_cmd() -> None:
    err = rejected({"request_id": "req-7", "user": "nurse.kim"})
    assert fields_named(err.reason) == ["cmd"]
    assert err.request_id == "req-7"


@pytest.mark.parametrize("name", COMMAND_NAMES)
def test_missing_request_id(name: str) -> None:
    obj = dict(VALID[name])
    del obj["request_id"]
    err = rejected(obj)
    assert fields_named(err.reason) == ["request_id"]
    assert err.request_id is None


@pytest.mark.parametrize("name", COMMAND_NAMES)
def test_missing_user(name: str) -> None:
    obj = dict(VALID[name])
    del obj["user"]
    err = rejected(obj)
    assert fields_named(err.reason) == ["user"]
    assert err.request_id == "req-1"


@pytest.mark.parametrize("name", COMMAND_NAMES)
def test_extra_field(name: str) -> None:
    err = rejected({**VALID[name], "priority": "now"})
    assert fields_named(err.reason) == ["priority"]
    assert err.request_id == "req-1"


def test_extra_field_named_like_a_command() -> None:
    err = rejected({**VALID["start_infusion"], "ack": True})
    assert fields_named(err.reason) == ["ack"]


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        (open_session(weight_kg=True), "weight_kg"),
        (open_session(concentration_mg_per_ml=True), "concentration_mg_per_ml"),
        (cmd("record_score", scale="PCL-5", value=False), "value"),
    ],
)
def test_bool_where_a_number_is_expected(obj: dict[str, Any], field: str) -> None:
    err = rejected(obj)
    assert fields_named(err.reason) == [field]
    assert err.request_id == "req-1"


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        (open_session(weight_kg="70"), "weight_kg"),
        (open_session(weight_kg=None), "weight_kg"),
        (open_session(concentration_mg_per_ml=[10]), "concentration_mg_per_ml"),
        (open_session(concentration_mg_per_ml=0), "concentration_mg_per_ml"),
        (open_session(concentration_mg_per_ml=-5), "concentration_mg_per_ml"),
        (open_session(patient_id=42), "patient_id"),
        (open_session(patient_id=""), "patient_id"),
        (open_session(patient_id="P 42/../x"), "patient_id"),
        (open_session(checklist="all clear"), "checklist"),
        (open_session(checklist={**CLEAR, "pregnancy": "no"}), "checklist.pregnancy"),
        (open_session(checklist={**CLEAR, "pregnancy": 0}), "checklist.pregnancy"),
        (open_session(checklist={**CLEAR, "allergies": False}), "checklist.allergies"),
        (cmd("ack", alarm_id=17), "alarm_id"),
        (cmd("ack", alarm_id=""), "alarm_id"),
        (cmd("ack", code="bp crisis"), "code"),
        (cmd("ack", code=7), "code"),
        (cmd("override", what="everything", reason="because"), "what"),
        (cmd("override", what="bp_pre_gate", reason=""), "reason"),
        (cmd("override", what="bp_pre_gate", reason=7), "reason"),
        (cmd("record_score", scale="MADRS", value=10), "scale"),
        (cmd("record_score", scale="PCL-5", value="10"), "value"),
        (cmd("record_score", scale="PCL-5", value=-1), "value"),
        (cmd("record_score", scale="PCL-5", value=201), "value"),
        (cmd("audio_pause", user=""), "user"),
        (cmd("audio_pause", user=["nurse"]), "user"),
    ],
)
def test_wrong_value_names_the_field(obj: dict[str, Any], field: str) -> None:
    err = rejected(obj)
    assert fields_named(err.reason) == [field]
    assert err.request_id == "req-1"


@pytest.mark.parametrize("request_id", [5, None, ["req-1"], {"id": "req-1"}, True])
def test_unreadable_request_id_is_not_echoed(request_id: Any) -> None:
    err = rejected({**VALID["audio_pause"], "request_id": request_id})
    assert "request_id" in fields_named(err.reason)
    assert err.request_id is None


def test_several_faults_are_all_named() -> None:
    err = rejected(open_session(weight_kg="heavy", patient_id="", colour="red"))
    assert sorted(fields_named(err.reason)) == ["colour", "patient_id", "weight_kg"]


@pytest.mark.parametrize("item", CHECKLIST_ITEMS)
def test_checklist_requires_every_item(item: str) -> None:
    checklist = dict(CLEAR)
    del checklist[item]
    err = rejected(open_session(checklist=checklist))
    assert fields_named(err.reason) == [f"checklist.{item}"]
    assert err.request_id == "req-1"


@pytest.mark.parametrize("item", CHECKLIST_ITEMS)
def test_checklist_item_must_be_answered_not_null(item: str) -> None:
    err = rejected(open_session(checklist={**CLEAR, item: None}))
    assert fields_named(err.reason) == [f"checklist.{item}"]


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"ack",
        b"\xff\xfe",
        b'{"cmd": "ack", "request_id": "req-1"',
        b"[]",
        b"null",
        b"42",
        b'"start_infusion"',
    ],
)
def test_not_a_json_object(raw: bytes) -> None:
    err = rejected(raw)
    assert err.request_id is None


def test_deeply_nested_json_is_refused() -> None:
    rejected(b"[" * 100_000 + b"]" * 100_000)
    rejected(b'{"request_id": "r", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")


def test_huge_number_is_refused() -> None:
    rejected(b"1" * 5000)
    err = rejected(
        b'{"cmd": "record_score", "request_id": "req-1", "user": "u", "scale": "PCL-5", '
        b'"value": ' + b"9" * 5000 + b"}"
    )
    assert err.request_id in (None, "req-1")


# ---------------------------------------------------------------- property-based

_JSON = json_values(text=30, keys=10, leaves=20)

# objects that look like commands, so validation goes past the command name
_COMMANDISH = st.fixed_dictionaries(
    {"cmd": st.sampled_from([*COMMAND_NAMES, "nope"])},
    optional={
        "request_id": _JSON | st.text(max_size=5),
        "user": _JSON | st.text(max_size=5),
        "patient_id": _JSON,
        "weight_kg": _JSON,
        "concentration_mg_per_ml": _JSON,
        "checklist": st.dictionaries(st.sampled_from(CHECKLIST_ITEMS), _JSON) | _JSON,
        "what": _JSON,
        "reason": _JSON,
        "alarm_id": _JSON,
        "scale": _JSON,
        "value": _JSON,
    },
)


def attempt(raw: bytes) -> Command | CommandRejectedError:
    """The parsed command, or the refusal; any other exception escapes and fails the test."""
    try:
        return parse_command(raw)
    except CommandRejectedError as exc:
        return exc


def _parse_or_refuse(raw: bytes) -> None:
    result = attempt(raw)
    if isinstance(result, CommandRejectedError):
        assert isinstance(result.reason, str)
        assert result.reason
        assert result.request_id is None or isinstance(result.request_id, str)


@given(_JSON)
def test_arbitrary_json_values_parse_or_are_refused(value: Any) -> None:
    _parse_or_refuse(payload(value))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(_COMMANDISH)
def test_arbitrary_commandlike_objects_parse_or_are_refused(obj: dict[str, Any]) -> None:
    _parse_or_refuse(payload(obj))


@given(st.binary(max_size=200))
def test_arbitrary_bytes_parse_or_are_refused(raw: bytes) -> None:
    _parse_or_refuse(raw)


@given(st.text(max_size=200))
def test_arbitrary_text_parses_or_is_refused(text: str) -> None:
    _parse_or_refuse(text.encode("utf-8", errors="surrogatepass"))


@given(
    request_id=st.text(min_size=1, max_size=100),
    obj=_COMMANDISH,
)
def test_readable_request_id_is_always_echoed(request_id: str, obj: dict[str, Any]) -> None:
    result = attempt(payload({**obj, "request_id": request_id}))
    assert result.request_id == request_id


@given(
    scale=st.sampled_from(["CAPS-5", "PCL-5", "IES-R", "CADSS"]),
    value=st.floats(min_value=0, max_value=200),
)
def test_record_score_accepts_its_whole_range(scale: str, value: float) -> None:
    c = parse_command(payload(cmd("record_score", scale=scale, value=value)))
    assert isinstance(c, RecordScore)
    assert c.value == value


def test_checklist_has_exactly_the_vocabulary_items() -> None:
    # the simulators answer the checklist from kernel.vocabulary (they sit below monitor), so
    # the command model and the vocabulary must name the same items (docs/PROTOCOL.md step 1)
    assert list(Checklist.model_fields) == CHECKLIST_ITEMS
    assert list(vocabulary.CHECKLIST_ITEMS) == CHECKLIST_ITEMS
