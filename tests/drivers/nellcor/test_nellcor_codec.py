"""Nellcor N-595 ASCII codec: lines by hand from the manuals' examples (docs/devices.md §2.6)."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from drivers.base import DriverStats
from drivers.nellcor.codec import (
    LineDecoder,
    NellcorLink,
    decode_capture,
    encode_reading,
    parse_line,
)
from tests.helpers import pieces

FIXTURE = Path(__file__).parents[2] / "data" / "devices" / "nellcor_n595.txt"
LINE = b"22-NOV-97 14:00:05   100   120   50\r\n"
# 1997-11-22 14:00:05 UTC
T = 880207205.0


def summary(data: bytes) -> list[tuple[str, float, bool, str | None]]:
    samples, _ = decode_capture(data, device_id="ox")
    return [(s.param.value, s.value, s.valid, s.reason) for s in samples]


def test_the_handwritten_printout_decodes_line_by_line() -> None:
    samples, stats = decode_capture(FIXTURE.read_bytes(), device_id="ox")
    got = [(s.param.value, s.value, s.valid, s.reason) for s in samples]
    nan = math.nan
    expected = [
        ("SPO2", 100.0, True, None), ("PR", 120.0, True, None),
        ("SPO2", 97.0, True, None), ("PR", 121.0, True, None),
        # * marks a value outside the oximeter's limits: still the patient's value
        ("SPO2", 84.0, True, None), ("PR", 72.0, True, None),
        ("SPO2", 83.0, True, None), ("PR", 130.0, True, None),
        ("SPO2", nan, False, "sensor_off"), ("PR", nan, False, "sensor_off"),
        ("SPO2", 90.0, False, "interference"), ("PR", 88.0, False, "interference"),
        # low battery does not make the reading untrustworthy
        ("SPO2", 96.0, True, None), ("PR", 75.0, True, None),
    ]  # fmt: skip
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g[0] == e[0]
        assert g[1] == e[1] or (math.isnan(g[1]) and math.isnan(e[1]))
        assert g[2:] == e[2:]
    # three heading lines and seven data lines, nothing dropped
    assert stats.frames == 10
    assert not stats.dropped
    assert all(s.device_id == "ox" and s.unit is not None for s in samples)


def test_a_data_line_keeps_its_own_time_and_status() -> None:
    reading = parse_line(b"22-NOV-97 14:00:11    83*  130*  40  SL  PH  AS")
    assert not isinstance(reading, str)
    assert reading is not None
    assert reading.stamp == dt.datetime(1997, 11, 22, 14, 0, 11)  # noqa: DTZ001
    assert (reading.spo2, reading.pr, reading.pa) == (83.0, 130.0, 40.0)
    assert reading.status == ("SL", "PH", "AS")
    assert reading.beyond_limits == {"SPO2", "PR"}
    assert reading.problem is None


def test_headings_are_lines_without_samples() -> None:
    for heading in (
        b"N-595 VERSION 1.6.0.0 CRC:A7B2 SpO2 Limit: 85-100% PR Limit: 50-120BPM",
        b"NPB-290 VERSION 1.0.0.1 CRC: XXXX SpO2 Limit: 30-100% PR Limit: 100-180BPM",
        b"ADULT  0SAT-S  SPO2 RESP MODE: NORMAL",
        b"TIME %SPO2 BPM PA Status",
    ):
        assert parse_line(heading) is None, heading


def test_rejections_name_their_reason() -> None:
    cases = {
        "not_ascii": b"22-NOV-97 14:00:05   1\xb000   120   50\r\n",
        "malformed": b"22-NOV-97 14:00:05   100   120\r\n",  # a column missing
        "too_long": b"x" * 300 + b"\r\n",
    }
    for reason, bad in cases.items():
        samples, stats = decode_capture(bad + LINE, device_id="ox")
        assert stats.dropped == {reason: 1}, reason
        assert [s.value for s in samples] == [100.0, 120.0], reason
    assert decode_capture(b"Output Complete\r\n", device_id="ox")[1].dropped == {"malformed": 1}
    assert decode_capture(b"32-NOV-97 14:00:05   100   120   50\r\n", device_id="o")[1].dropped == {
        "malformed": 1
    }


def test_an_unknown_status_code_is_counted_and_the_line_kept() -> None:
    samples, stats = decode_capture(b"22-NOV-97 14:00:05    98    72   45  ZZ\r\n", device_id="o")
    assert [(s.value, s.valid) for s in samples] == [(98.0, True), (72.0, True)]
    assert stats.dropped == {"unknown_status": 1}


def test_a_cut_line_is_truncated_and_garbage_is_garbage() -> None:
    _, stats = decode_capture(LINE[:20] + LINE, device_id="ox")
    assert stats.dropped == {"truncated": 1}
    _, stats = decode_capture(b"\x21\x40noise" + LINE, device_id="ox")
    assert stats.dropped == {"garbage": 1}


def test_the_link_stamps_with_the_receive_time_and_sends_nothing() -> None:
    link = NellcorLink("ox", DriverStats())
    assert link.start(0.0) == link.timer(1.0) == b""
    assert link.receive(LINE[:10], 4.0).samples == ()
    got = link.receive(LINE[10:], 5.0)
    assert [(s.t, s.value) for s in got.samples] == [(5.0, 100.0), (5.0, 120.0)]


def test_decode_reads_the_oximeters_local_time() -> None:
    import os  # noqa: PLC0415
    import time  # noqa: PLC0415

    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    try:
        samples, _ = decode_capture(LINE, device_id="ox")
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()
    assert {s.t for s in samples} == {T}


values = st.one_of(st.none(), st.integers(0, 255).map(float))


@given(
    spo2=values, pr=values, codes=st.lists(st.sampled_from(["SO", "LB", "PS", "AS"]), max_size=3)
)
def test_round_trip(spo2: float | None, pr: float | None, codes: list[str]) -> None:
    stamp = dt.datetime(2026, 12, 2, 17, 35, 20)  # noqa: DTZ001
    reading = parse_line(encode_reading(stamp=stamp, spo2=spo2, pr=pr, status=tuple(codes))[:-2])
    assert reading is not None
    assert not isinstance(reading, str)
    assert (reading.stamp, reading.spo2, reading.pr, reading.status) == (
        stamp,
        spo2,
        pr,
        tuple(codes),
    )


@given(st.lists(st.binary(max_size=200), max_size=20))
def test_arbitrary_bytes_never_raise_and_a_line_after_them_decodes(chunks: list[bytes]) -> None:
    decoder = LineDecoder()
    for chunk in chunks:
        decoder.feed(chunk)
    got = decoder.feed(b"\r\n" + LINE)
    assert got[-1].spo2 == 100.0


@given(st.lists(st.integers(1, 40), min_size=1, max_size=30))
def test_any_split_gives_the_same_readings(cuts: list[int]) -> None:
    data = FIXTURE.read_bytes()
    decoder = LineDecoder()
    got = [r for piece in pieces(data, cuts) for r in decoder.feed(piece)]
    assert [r.spo2 for r in got] == [100.0, 97.0, 84.0, 83.0, None, 90.0, 96.0]
    assert not decoder.stats.dropped
