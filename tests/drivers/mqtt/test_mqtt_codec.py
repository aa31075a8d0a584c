"""drivers.mqtt.codec: every drop reason, the validity verdicts, and properties over any input."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.mqtt.codec import (
    MAX_PAYLOAD_BYTES,
    MAX_T,
    VSCAPTURE_PHYSIO_IDS,
    DecodeResult,
    DropReason,
    decode_vigil,
    decode_vscapture,
    encode_vigil,
    encode_vscapture,
)
from kernel.vocabulary import MDC_CODES, PHYSIOLOGICAL_RANGE, UNITS, Param, Sample
from tests.strategies import json_values

# The machine running the suite is shared: timing-based health checks and deadlines would make
# these properties flaky without testing anything about the codec.
robust = settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)

DEVICE = "mon1"
T0 = 1_764_200_000.0


def sample_json(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "t": T0,
        "param": "HR",
        "value": 60.0,
        "valid": True,
        "device_id": DEVICE,
    }
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not _ABSENT}


_ABSENT = object()


def vigil(doc: object) -> DecodeResult:
    return decode_vigil(json.dumps(doc).encode(), device_id=DEVICE)


def only_drop(result: DecodeResult) -> str:
    assert result.samples == ()
    assert len(result.dropped) == 1
    return result.dropped[0]


def only_sample(result: DecodeResult) -> Sample:
    assert result.dropped == ()
    assert len(result.samples) == 1
    return result.samples[0]


# --------------------------------------------------------------------------------------------
# vigil: accepted samples
# --------------------------------------------------------------------------------------------


def test_architecture_example_decodes_with_unit_and_mdc_filled_in() -> None:
    payload = (
        b'{"t": 1764200000.0, "param": "HR", "value": 60.0, "valid": true, "device_id": "mon1"}'
    )
    result = decode_vigil(payload, device_id=DEVICE)
    assert result == DecodeResult(
        samples=(
            Sample(
                t=T0,
                param=Param.HR,
                value=60.0,
                valid=True,
                device_id=DEVICE,
                unit="/min",
                mdc=147842,
            ),
        )
    )


def test_integers_are_numbers() -> None:
    s = only_sample(vigil(sample_json(t=1_764_200_000, value=60)))
    assert (s.t, s.value) == (T0, 60.0)
    assert isinstance(s.t, float)
    assert isinstance(s.value, float)


def test_matching_unit_and_mdc_and_vendor_fields_are_accepted() -> None:
    doc = sample_json(param="SPO2", value=97, unit="%", mdc=150456, vendor_x={"a": [1]})
    s = only_sample(vigil(doc))
    assert (s.param, s.unit, s.mdc, s.valid) == (Param.SPO2, "%", 150456, True)


def test_null_unit_and_mdc_count_as_absent() -> None:
    s = only_sample(vigil(sample_json(unit=None, mdc=None, reason=None)))
    assert (s.unit, s.mdc, s.reason) == ("/min", 147842, None)


def test_hr_900_is_kept_invalid_and_counted() -> None:
    result = vigil(sample_json(value=900))
    s = only_sample(result)
    assert (s.value, s.valid, s.reason) == (900.0, False, "out_of_range")
    assert result.out_of_range == 1


def test_range_bounds_are_inside() -> None:
    lo, hi = PHYSIOLOGICAL_RANGE[Param.HR]
    assert only_sample(vigil(sample_json(value=lo))).valid
    assert only_sample(vigil(sample_json(value=hi))).valid
    assert not only_sample(vigil(sample_json(value=hi + 0.1))).valid


def test_null_value_is_an_invalid_sample() -> None:
    result = vigil(sample_json(value=None))
    s = only_sample(result)
    assert math.isnan(s.value)
    assert (s.valid, s.reason) == (False, "no_value")
    assert result.out_of_range == 0


def test_device_invalid_verdict_and_reason_stand() -> None:
    result = vigil(sample_json(value=900, valid=False, reason="sensor off"))
    s = only_sample(result)
    assert (s.valid, s.reason) == (False, "sensor off")
    # only overridden verdicts are counted: the device already said invalid
    assert result.out_of_range == 0


def test_device_invalid_without_reason_gets_ours() -> None:
    assert only_sample(vigil(sample_json(value=None, valid=False))).reason == "no_value"
    assert only_sample(vigil(sample_json(value=0, valid=False))).reason == "out_of_range"
    assert only_sample(vigil(sample_json(value=60, valid=False))).reason is None


def test_huge_integer_value_is_out_of_range_not_an_error() -> None:
    result = decode_vigil(
        b'{"t": 1, "param": "HR", "value": 1' + b"0" * 400 + b', "valid": true, "device_id": "x"}',
        device_id=DEVICE,
    )
    s = only_sample(result)
    assert (s.value, s.valid, s.reason) == (math.inf, False, "out_of_range")


def test_configured_device_id_wins_and_mismatch_is_counted() -> None:
    result = vigil(sample_json(device_id="other-monitor"))
    assert only_sample(result).device_id == DEVICE
    assert result.device_id_mismatch == 1
    assert vigil(sample_json()).device_id_mismatch == 0


def test_t_zero_and_max_are_accepted() -> None:
    assert only_sample(vigil(sample_json(t=0))).t == 0.0
    assert only_sample(vigil(sample_json(t=MAX_T))).t == MAX_T


# --------------------------------------------------------------------------------------------
# vigil: every drop reason
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b'{"t": 1',
        b"\xff\xfe{}",
        '{"t": 1}'.encode("utf-16"),  # json.loads(bytes) would sniff UTF-16; we do not
        b'{"t": NaN, "param": "HR", "value": 60, "valid": true, "device_id": "x"}',
        b'{"t": 1, "param": "HR", "value": Infinity, "valid": true, "device_id": "x"}',
        b"[" * 100_000,
        b'{"t": ' + b"1" * 5000 + b"}",  # past Python's int digit limit
    ],
)
def test_not_json(payload: bytes) -> None:
    assert only_drop(decode_vigil(payload, device_id=DEVICE)) == "not_json"


def test_too_large() -> None:
    payload = json.dumps(sample_json(pad="x" * MAX_PAYLOAD_BYTES)).encode()
    assert only_drop(decode_vigil(payload, device_id=DEVICE)) == "too_large"


@pytest.mark.parametrize("doc", [[], "HR", 60, None, True, [[sample_json()]]])
def test_not_object(doc: object) -> None:
    assert only_drop(vigil(doc)) == "not_object"


def test_array_of_samples_each_judged_alone() -> None:
    good = sample_json()
    result = vigil([good, {**good, "param": "TEMP"}, {**good, "param": "SPO2", "value": 97}])
    assert [(s.param, s.value) for s in result.samples] == [(Param.HR, 60.0), (Param.SPO2, 97.0)]
    assert result.dropped == ("unknown_param",)


@pytest.mark.parametrize("field", ["t", "param", "value", "valid", "device_id"])
def test_missing_field(field: str) -> None:
    assert only_drop(vigil(sample_json(**{field: _ABSENT}))) == "missing_field"


@pytest.mark.parametrize(
    "overrides",
    [
        {"t": "1764200000"},  # strings are never coerced
        {"t": True},  # a bool is not a number
        {"t": None},
        {"value": "60"},
        {"value": True},
        {"value": [60]},
        {"valid": 1},
        {"valid": "true"},
        {"valid": None},
        {"param": 1},
        {"param": None},
        {"device_id": 7},
        {"unit": 5},
        {"mdc": "147842"},
        {"mdc": 147842.0},
        {"mdc": True},
        {"reason": 3},
        {"reason": "\ud800"},  # a lone surrogate could not be stored
    ],
)
def test_wrong_type(overrides: dict[str, Any]) -> None:
    assert only_drop(vigil(sample_json(**overrides))) == "wrong_type"


@pytest.mark.parametrize("param", ["hr", "TEMP", "", "EVENT"])
def test_unknown_param(param: str) -> None:
    assert only_drop(vigil(sample_json(param=param))) == "unknown_param"


@pytest.mark.parametrize("t", [-1, -0.001, 1e400, MAX_T + 1, 10**400])
def test_bad_time(t: float) -> None:
    payload = json.dumps(sample_json()).replace(str(T0), repr(t) if t != 1e400 else "1e400")
    assert only_drop(decode_vigil(payload.encode(), device_id=DEVICE)) == "bad_time"


def test_wrong_unit_is_dropped_not_converted() -> None:
    assert only_drop(vigil(sample_json(param="ETCO2", value=5.3, unit="kPa"))) == "wrong_unit"


def test_wrong_mdc() -> None:
    assert only_drop(vigil(sample_json(mdc=MDC_CODES[Param.PR]))) == "wrong_mdc"


def test_check_order_missing_before_type() -> None:
    assert only_drop(vigil({"t": "x"})) == "missing_field"


def test_every_drop_reason_is_a_plain_string() -> None:
    result = vigil([])
    assert type(result.dropped[0]) is str


# --------------------------------------------------------------------------------------------
# vigil, properties over any input
# --------------------------------------------------------------------------------------------


@robust
@given(st.binary(max_size=512))
def test_any_bytes_give_one_sample_or_one_drop(payload: bytes) -> None:
    result = decode_vigil(payload, device_id=DEVICE)
    assert len(result.samples) + len(result.dropped) == 1
    assert all(r in set(DropReason) for r in result.dropped)


_json_values = json_values(text=8, keys=6, leaves=8)


@robust
@given(
    st.dictionaries(
        st.sampled_from(["t", "param", "value", "valid", "device_id", "unit", "mdc", "reason"]),
        _json_values | st.sampled_from([*Param, T0, "/min", "%", 147842]),
    )
)
def test_any_sample_like_object_gives_one_sample_or_one_drop(doc: dict[str, Any]) -> None:
    result = vigil(doc)
    assert len(result.samples) + len(result.dropped) == 1
    for s in result.samples:
        assert s.device_id == DEVICE
        assert s.unit == UNITS[s.param]
        assert s.mdc == MDC_CODES[s.param]
        assert not s.valid or s.usable


@st.composite
def decodable_samples(draw: st.DrawFn) -> Sample:
    """Samples as decode_vigil produces them: unit/mdc filled in, verdicts consistent."""
    param = draw(st.sampled_from(Param))
    lo, hi = PHYSIOLOGICAL_RANGE[param]
    t = draw(st.floats(min_value=0.0, max_value=MAX_T))
    kind = draw(st.sampled_from(["valid", "device_invalid", "out_of_range"]))
    reason: str | None
    if kind == "valid":
        value = draw(st.floats(min_value=lo, max_value=hi))
        valid, reason = True, None
    elif kind == "device_invalid":
        value = draw(st.floats(allow_nan=False, allow_infinity=False))
        valid, reason = False, draw(st.text(min_size=1, max_size=20).filter(_utf8))
    else:
        value = draw(st.floats(min_value=hi, exclude_min=True, allow_infinity=False))
        valid, reason = False, "out_of_range"
    return Sample(
        t=t,
        param=param,
        value=value,
        valid=valid,
        device_id=DEVICE,
        unit=UNITS[param],
        mdc=MDC_CODES[param],
        reason=reason,
    )


def _utf8(s: str) -> bool:
    try:
        s.encode()
    except UnicodeEncodeError:
        return False
    return True


@robust
@given(decodable_samples())
def test_round_trip_through_sample_json(sample: Sample) -> None:
    payload = json.dumps(sample.to_json()).encode()
    assert only_sample(decode_vigil(payload, device_id=DEVICE)) == sample
    assert only_sample(decode_vigil(encode_vigil(sample), device_id=DEVICE)) == sample


def test_round_trip_of_a_missing_value() -> None:
    sample = Sample(T0, Param.SPO2, math.nan, valid=False, device_id=DEVICE, reason="no_value")
    back = only_sample(decode_vigil(encode_vigil(sample), device_id=DEVICE))
    assert math.isnan(back.value)
    assert (back.valid, back.reason, back.unit) == (False, "no_value", "%")


def test_encode_vigil_refuses_a_non_finite_time() -> None:
    with pytest.raises(ValueError, match="JSON"):
        encode_vigil(Sample(math.inf, Param.HR, 60.0, valid=True, device_id=DEVICE))


# --------------------------------------------------------------------------------------------
# vscapture
# --------------------------------------------------------------------------------------------

RECEIVED = 1_800_000_000.0


def numeric(
    physio_id: object, value: object, timestamp: object = "27-11-2026 10:00:00.125"
) -> dict[str, object]:
    """One item as VSCaptureMP writes it (Class1.cs NumericValResult)."""
    return {
        "Timestamp": timestamp,
        "Relativetimestamp": "123456",
        "SystemLocalTime": "27-11-2026 10:00:00.380",
        "PhysioID": physio_id,
        "Value": value,
        "DeviceID": "bed3-mp70",
    }


def vscapture(items: object, tz: dt.tzinfo | None = dt.UTC) -> DecodeResult:
    return decode_vscapture(
        json.dumps(items).encode(), device_id=DEVICE, received_t=RECEIVED, tz=tz
    )


T_UTC = dt.datetime(2026, 11, 27, 10, 0, 0, 125_000, tzinfo=dt.UTC).timestamp()


def test_vscapture_poll_of_a_philips_monitor() -> None:
    result = vscapture(
        [
            numeric("NOM_ECG_CARD_BEAT_RATE", "72"),
            numeric("NOM_PLETH_PULS_RATE", "71"),
            numeric("NOM_PULS_OXIM_SAT_O2", "97"),
            numeric("NOM_PULS_OXIM_PERF_REL", "1.42"),  # perfusion index: not used
            numeric("NOM_PRESS_BLD_NONINV_SYS", "121"),
            numeric("NOM_PRESS_BLD_NONINV_DIA", "78"),
            numeric("NOM_PRESS_BLD_NONINV_MEAN", "92"),
            numeric("NOM_AWAY_CO2_ET", "38.5"),
            numeric("NOM_TEMP", "36.8"),
        ]
    )
    assert [(s.param, s.value) for s in result.samples] == [
        (Param.HR, 72.0),
        (Param.PR, 71.0),
        (Param.SPO2, 97.0),
        (Param.NIBP_SYS, 121.0),
        (Param.NIBP_DIA, 78.0),
        (Param.NIBP_MEAN, 92.0),
        (Param.ETCO2, 38.5),
    ]
    assert all(s.t == T_UTC and s.valid and s.device_id == DEVICE for s in result.samples)
    assert all(s.unit == UNITS[s.param] and s.mdc == MDC_CODES[s.param] for s in result.samples)
    assert result.dropped == ("unmapped_physio_id", "unmapped_physio_id")
    assert (result.out_of_range, result.retimed) == (0, 0)


def test_vscapture_arterial_line_under_either_label() -> None:
    result = vscapture(
        [
            numeric("NOM_PRESS_BLD_ART_ABP_SYS", "130"),
            numeric("NOM_PRESS_BLD_ART_ABP_DIA", "70"),
            numeric("NOM_PRESS_BLD_ART_ABP_MEAN", "90"),
            numeric("NOM_PRESS_BLD_ART_SYS", "131"),
            numeric("NOM_PRESS_BLD_ART_DIA", "71"),
            numeric("NOM_PRESS_BLD_ART_MEAN", "91"),
        ]
    )
    assert [s.param for s in result.samples] == [
        Param.ABP_SYS,
        Param.ABP_DIA,
        Param.ABP_MEAN,
    ] * 2


def test_vscapture_table_maps_only_vocabulary_params() -> None:
    assert set(VSCAPTURE_PHYSIO_IDS.values()) == set(Param)
    assert all(name.startswith("NOM_") for name in VSCAPTURE_PHYSIO_IDS)


@pytest.mark.parametrize("value", ["-", "", " ", None, "8388606", "-8388606", "-8388608"])
def test_vscapture_no_value_is_an_invalid_sample(value: object) -> None:
    result = vscapture([numeric("NOM_PULS_OXIM_SAT_O2", value)])
    s = only_sample(result)
    assert math.isnan(s.value)
    assert (s.valid, s.reason) == (False, "no_value")
    assert result.out_of_range == 0


@pytest.mark.parametrize(
    ("value", "expected"), [("97,5", 97.5), ("98.25", 98.25), (96, 96.0), (95.5, 95.5)]
)
def test_vscapture_value_forms(value: object, expected: float) -> None:
    assert only_sample(vscapture([numeric("NOM_PULS_OXIM_SAT_O2", value)])).value == expected


@pytest.mark.parametrize(
    "value", ["abc", "NaN", "inf", "∞", "1_000", "1.2.3", "1,2,3", True, [1], {}]
)
def test_vscapture_unreadable_value_is_wrong_type(value: object) -> None:
    assert only_drop(vscapture([numeric("NOM_PULS_OXIM_SAT_O2", value)])) == "wrong_type"


def test_vscapture_out_of_range_is_kept_and_counted() -> None:
    result = vscapture([numeric("NOM_ECG_CARD_BEAT_RATE", "900")])
    s = only_sample(result)
    assert (s.value, s.valid, s.reason) == (900.0, False, "out_of_range")
    assert result.out_of_range == 1


def test_vscapture_airway_rr_supersedes_impedance_rr() -> None:
    result = vscapture([numeric("NOM_RESP_RATE", "14"), numeric("NOM_AWAY_RESP_RATE", "0")])
    assert [(s.param, s.value) for s in result.samples] == [(Param.RR, 0.0)]
    assert result.dropped == ("superseded",)


def test_vscapture_impedance_rr_when_airway_rr_has_no_value() -> None:
    result = vscapture([numeric("NOM_RESP_RATE", "14"), numeric("NOM_AWAY_RESP_RATE", "-")])
    assert [(s.param, s.valid) for s in result.samples] == [(Param.RR, True), (Param.RR, False)]
    assert result.dropped == ()


def test_vscapture_timestamp_is_wall_time_in_the_given_zone() -> None:
    paris = ZoneInfo("Europe/Paris")  # UTC+1 in November
    s = only_sample(vscapture([numeric("NOM_ECG_CARD_BEAT_RATE", "72")], tz=paris))
    assert s.t == T_UTC - 3600


def test_vscapture_timestamp_across_dst() -> None:
    paris = ZoneInfo("Europe/Paris")  # UTC+2 in July
    s = only_sample(
        vscapture([numeric("NOM_ECG_CARD_BEAT_RATE", "72", "01-07-2026 12:00:00.000")], tz=paris)
    )
    assert s.t == dt.datetime(2026, 7, 1, 10, tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize(
    "timestamp",
    [
        None,
        42,
        "",
        "2026-11-27T10:00:00Z",
        "27/11/2026 10:00:00.125",
        "31-02-2026 10:00:00.000",
        "01-01-0001 00:00:03.250",  # monitor without absolute time (VSCaptureMP's DateTime())
        "01-01-1969 23:59:59.000",
    ],
)
def test_vscapture_unusable_timestamp_uses_receive_time(timestamp: object) -> None:
    result = vscapture([numeric("NOM_ECG_CARD_BEAT_RATE", "72", timestamp)])
    s = only_sample(result)
    assert (s.t, s.valid) == (RECEIVED, True)
    assert result.retimed == 1


def test_vscapture_missing_timestamp_uses_receive_time_in_host_zone_too() -> None:
    item = numeric("NOM_ECG_CARD_BEAT_RATE", "72")
    del item["Timestamp"]
    result = vscapture([item], tz=None)
    assert only_sample(result).t == RECEIVED
    assert result.retimed == 1


def test_vscapture_device_id_in_payload_is_ignored() -> None:
    item = numeric("NOM_ECG_CARD_BEAT_RATE", "72")
    item["DeviceID"] = None  # VSCaptureMP run without -devid
    assert only_sample(vscapture([item])).device_id == DEVICE


@pytest.mark.parametrize(
    "physio_id", [None, "ECG.HR", "nom_ecg_card_beat_rate", "NOM_METRIC_NOS", "HR"]
)
def test_vscapture_unmapped_physio_id(physio_id: object) -> None:
    assert only_drop(vscapture([numeric(physio_id, "72")])) == "unmapped_physio_id"


def test_vscapture_drops_one_reason_per_bad_item_and_keeps_the_rest() -> None:
    result = vscapture(
        [
            "HR",
            numeric(7, "72"),
            {"PhysioID": "NOM_ECG_CARD_BEAT_RATE"},
            {"Value": "72"},
            numeric("NOM_ECG_CARD_BEAT_RATE", "72"),
        ]
    )
    assert result.dropped == ("not_object", "wrong_type", "missing_field", "missing_field")
    assert len(result.samples) == 1


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\x00\x01", "not_json"),
        (b'{"PhysioID": "NOM_ECG_CARD_BEAT_RATE", "Value": "72"}', "not_list"),
        (b'"x"', "not_list"),
        (b"[" * 100_000, "not_json"),
    ],
)
def test_vscapture_unusable_payload(payload: bytes, reason: str) -> None:
    result = decode_vscapture(payload, device_id=DEVICE, received_t=RECEIVED)
    assert result == DecodeResult(dropped=(reason,))


def test_vscapture_empty_list_is_nothing() -> None:
    assert vscapture([]) == DecodeResult()


@robust
@given(st.binary(max_size=512))
def test_vscapture_any_bytes_never_raise(payload: bytes) -> None:
    result = decode_vscapture(payload, device_id=DEVICE, received_t=RECEIVED)
    assert all(r in set(DropReason) for r in result.dropped)


@robust
@given(
    st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "PhysioID": st.sampled_from([*VSCAPTURE_PHYSIO_IDS, None, "NOM_TEMP"])
                | _json_values,
                "Value": st.sampled_from(["-", "", "72", "97,5", "abc"]) | _json_values,
                "Timestamp": st.sampled_from(["27-11-2026 10:00:00.125", "01-01-0001 00:00:00.000"])
                | _json_values,
            },
        )
        | _json_values,
        max_size=8,
    ),
    st.sampled_from([dt.UTC, None, ZoneInfo("America/New_York")]),
)
def test_vscapture_every_item_is_a_sample_or_a_drop(items: list[Any], tz: dt.tzinfo | None) -> None:
    result = vscapture(items, tz=tz)
    assert len(result.samples) + len(result.dropped) == len(items)
    assert result.retimed <= len(result.samples)
    for s in result.samples:
        assert 0.0 <= s.t <= MAX_T
        assert not s.valid or s.usable


@robust
@given(
    st.lists(
        st.builds(
            Sample,
            t=st.floats(min_value=946_684_800.0, max_value=4_102_444_800.0),  # 2000..2100
            param=st.sampled_from(Param).filter(lambda p: p is not Param.RR),
            value=st.floats(min_value=0.0, max_value=300.0) | st.just(math.nan),
            valid=st.just(True),
            device_id=st.just(DEVICE),
        ),
        max_size=6,
    )
)
def test_vscapture_encode_decode_round_trip(samples: list[Sample]) -> None:
    result = decode_vscapture(
        encode_vscapture(samples, tz=dt.UTC), device_id=DEVICE, received_t=RECEIVED, tz=dt.UTC
    )
    assert result.dropped == ()
    assert result.retimed == 0
    assert len(result.samples) == len(samples)
    for sent, got in zip(samples, result.samples, strict=True):
        assert got.param == sent.param
        assert abs(got.t - sent.t) <= 0.0011  # milliseconds on the wire
        if math.isnan(sent.value):
            assert math.isnan(got.value)
        else:
            assert abs(got.value - sent.value) <= 0.0051  # "0.##" on the wire
        assert got.valid == got.usable
