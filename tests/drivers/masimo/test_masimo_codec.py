"""The Masimo ASCII 1 codec: lines from the public examples, round trips, garbage, resync."""

from __future__ import annotations

import datetime as dt
import math

from hypothesis import given
from hypothesis import strategies as st

from drivers.base import DriverStats
from drivers.masimo.codec import (
    MAX_LINE,
    DropReason,
    LineDecoder,
    MasimoLink,
    MasimoRecord,
    encode_line,
    parse_line,
    record_samples,
)
from kernel.vocabulary import Param
from tests.helpers import pieces

# Layouts as docs/devices.md §2.1 describes them for each model, written by hand.
RAD8 = (
    b"02/15/24 14:03:22 SN=0000012345 SPO2=098% BPM=072 PI=03.60% SPCO=--.-% SPMET=--.-% "
    b"DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800"
)
RAD8_PVI = (
    b"02/15/24 14:03:23 SN=0000012345 SPO2=097% BPM=071 PI=03.55% SPCO=--.-% SPMET=--.-% "
    b"DESAT=-- PIDELTA=+-- PVI=014 ALARM=0000 EXC=000800"
)
RADICAL5 = b"11/30/09 08:00:01 SPO2=095% BPM=088 PI=01.20% ALARM=00 EXC=000"
RADICAL7_COLOR = (
    b"01/02/13 23:59:59 SN=0000054321 SPO2=099% BPM=060 PI=10.10% SPCO=--.-% SPMET=01.2% "
    b"SPHB=13.4 SPOC=19.0 RESVD=--- DESAT=-- PIDELTA=+-- PVI=009 ALARM=000000 EXC=0000800 "
    b"EXC1=00000000"
)


def test_rad8_line_decodes_spo2_pulse_rate_and_pi() -> None:
    record = parse_line(RAD8)
    assert isinstance(record, MasimoRecord)
    assert (record.spo2, record.pr, record.pi, record.pvi) == (98.0, 72.0, 3.6, None)
    assert record.stamp == dt.datetime(2024, 2, 15, 14, 3, 22)  # noqa: DTZ001
    assert record.conditions == ("masimo_set",)
    assert record.problem is None


def test_rad8_with_pvi() -> None:
    record = parse_line(RAD8_PVI)
    assert isinstance(record, MasimoRecord)
    assert (record.spo2, record.pr, record.pvi) == (97.0, 71.0, 14.0)


def test_radical5_short_fields() -> None:
    record = parse_line(RADICAL5)
    assert isinstance(record, MasimoRecord)
    assert (record.spo2, record.pr, record.pi, record.alarm, record.exc) == (95.0, 88.0, 1.2, 0, 0)


def test_radical7_color_extra_fields_are_kept_not_fatal() -> None:
    record = parse_line(RADICAL7_COLOR)
    assert isinstance(record, MasimoRecord)
    assert (record.spo2, record.pr) == (99.0, 60.0)
    assert record.fields["SPHB"] == "13.4"
    assert record.fields["EXC1"] == "00000000"


def test_dashes_are_missing_values_and_give_invalid_samples() -> None:
    line = RAD8.replace(b"SPO2=098%", b"SPO2=---%").replace(b"BPM=072", b"BPM=---")
    line = line.replace(b"PI=03.60%", b"PI=--.--%")
    record = parse_line(line)
    assert isinstance(record, MasimoRecord)
    assert (record.spo2, record.pr, record.pi) == (None, None, None)
    samples = record_samples(record, t=100.0, device_id="ox")
    assert [(s.param, s.valid, s.reason) for s in samples] == [
        (Param.SPO2, False, "no_value"),
        (Param.PR, False, "no_value"),
    ]
    assert all(math.isnan(s.value) for s in samples)


def test_alarm_and_exc_bits_decoded_sensor_off_makes_samples_invalid() -> None:
    line = RAD8.replace(b"ALARM=0000", b"ALARM=0032").replace(b"EXC=000800", b"EXC=000828")
    record = parse_line(line)
    assert isinstance(record, MasimoRecord)
    assert record.alarms == ("spo2_low", "alarm_active", "alarm_silenced")
    assert record.conditions == ("pulse_search", "sensor_off", "masimo_set")
    assert record.problem == "pulse_search"
    samples = record_samples(record, t=5.0, device_id="ox")
    assert {(s.param, s.value, s.valid, s.reason) for s in samples} == {
        (Param.SPO2, 98.0, False, "pulse_search"),
        (Param.PR, 72.0, False, "pulse_search"),
    }


def test_samples_carry_unit_mdc_device_and_time() -> None:
    record = parse_line(RAD8)
    assert isinstance(record, MasimoRecord)
    spo2, pr = record_samples(record, t=1_800_000_000.5, device_id="ox")
    assert (spo2.unit, spo2.mdc, spo2.device_id, spo2.t) == ("%", 150456, "ox", 1_800_000_000.5)
    assert (pr.param, pr.unit, pr.mdc) == (Param.PR, "/min", 149530)


def test_out_of_range_value_is_invalid() -> None:
    record = parse_line(RAD8.replace(b"BPM=072", b"BPM=400"))
    assert isinstance(record, MasimoRecord)
    _, pr = record_samples(record, t=0.0, device_id="ox")
    assert (pr.value, pr.valid, pr.reason) == (400.0, False, "out_of_range")


def test_rejections_name_their_reason() -> None:
    assert parse_line(b"SPO2=098% BPM=072") is DropReason.NO_TIMESTAMP
    assert parse_line(b"13/45/24 14:03:22 SPO2=098%") is DropReason.NO_TIMESTAMP
    assert parse_line(RAD8.replace(b"BPM=072", b"BPM=07x")) is DropReason.MALFORMED
    assert parse_line(RAD8 + b" SPO2=097%") is DropReason.MALFORMED
    assert parse_line(RAD8 + b" junk") is DropReason.MALFORMED
    assert parse_line(RAD8.replace(b"EXC=000800", b"EXC=00G800")) is DropReason.MALFORMED
    assert parse_line(RAD8.replace(b"7", b"\xb7", 1)) is DropReason.NOT_ASCII
    assert parse_line(b"02/15/24 14:03:22 SN=1 PI=03.60%") is DropReason.NO_FIELDS


def test_decoder_joins_pieces_and_resyncs_after_garbage_and_truncation() -> None:
    stats = DriverStats()
    decoder = LineDecoder(stats)
    stream = (
        b"\x00\xff\x13garbage\r\n"
        + RAD8[:40]  # a line cut short, then the next whole line
        + RAD8_PVI
        + b"\r\n"
        + RADICAL5
        + b"\r\n"
    )
    records = [r for i in range(0, len(stream), 7) for r in decoder.feed(stream[i : i + 7])]
    assert [(r.spo2, r.pr) for r in records] == [(97.0, 71.0), (95.0, 88.0)]
    assert stats.frames == 2
    assert stats.dropped == {DropReason.NOT_ASCII: 1, DropReason.TRUNCATED: 1}


def test_garbage_before_a_line_is_garbage_not_a_truncated_line() -> None:
    stats = DriverStats()
    decoder = LineDecoder(stats)
    stream = b"\x93\x00#~" + RAD8 + b"\r\n" + b"k!" + RAD8[:40] + RAD8_PVI + b"\r\n"
    records = decoder.feed(stream)
    assert [(r.spo2, r.pr) for r in records] == [(98.0, 72.0), (97.0, 71.0)]
    # the second line carried both: bytes that start no line, and a line cut short
    assert stats.dropped == {DropReason.GARBAGE: 2, DropReason.TRUNCATED: 1}


def test_decoder_drops_an_endless_line_once_and_recovers() -> None:
    stats = DriverStats()
    decoder = LineDecoder(stats)
    assert decoder.feed(b"A" * (MAX_LINE + 10)) == []
    assert decoder.feed(b"B" * 3000) == []
    records = decoder.feed(b"tail\r\n" + RAD8 + b"\r\n")
    assert [r.spo2 for r in records] == [98.0]
    assert stats.dropped == {DropReason.TOO_LONG: 1}


def test_link_stamps_samples_with_the_receive_time() -> None:
    stats = DriverStats()
    link = MasimoLink("ox", stats)
    assert link.start(0.0) == b""
    assert link.receive(RAD8[:20], 10.0).samples == ()
    got = link.receive(RAD8[20:] + b"\r\n", 11.0)
    assert [(s.param, s.value, s.t) for s in got.samples] == [
        (Param.SPO2, 98.0, 11.0),
        (Param.PR, 72.0, 11.0),
    ]
    assert link.timer(12.0) == b""


values = st.one_of(st.none(), st.integers(0, 100).map(float))
rates = st.one_of(st.none(), st.integers(0, 300).map(float))
perfusion = st.one_of(st.none(), st.integers(0, 2000).map(lambda x: x / 100))
# the monitor's clock has no zone (ASCII 1 sends local wall time)
stamps = st.datetimes(
    min_value=dt.datetime(2000, 1, 1),  # noqa: DTZ001
    max_value=dt.datetime(2099, 12, 31),  # noqa: DTZ001
)


@given(
    stamp=stamps,
    spo2=values,
    pr=rates,
    pi=perfusion,
    pvi=rates.filter(lambda x: x is None or x < 1000),
    alarm=st.integers(0, 0xFF),
    exc=st.integers(0, 0xFFF),
    model=st.sampled_from(["radical5", "rad8", "rad8-pvi"]),
)
def test_round_trip(
    stamp: dt.datetime,
    spo2: float | None,
    pr: float | None,
    pi: float | None,
    pvi: float | None,
    alarm: int,
    exc: int,
    model: str,
) -> None:
    line = encode_line(
        stamp=stamp, spo2=spo2, pr=pr, pi=pi, pvi=pvi, alarm=alarm, exc=exc, model=model
    )
    assert line.endswith(b"\r\n")
    record = parse_line(line[:-2])
    assert isinstance(record, MasimoRecord)
    assert record.stamp == stamp.replace(microsecond=0)
    assert (record.spo2, record.pr, record.pi) == (spo2, pr, pi)
    assert record.pvi == (pvi if model == "rad8-pvi" else None)
    assert (record.alarm, record.exc) == (alarm, exc)


@given(st.lists(st.binary(max_size=200), max_size=20))
def test_arbitrary_bytes_never_raise_and_every_line_is_accounted_for(chunks: list[bytes]) -> None:
    stats = DriverStats()
    decoder = LineDecoder(stats)
    records = [r for chunk in chunks for r in decoder.feed(chunk)]
    assert stats.frames == len(records)
    # afterwards a good line still decodes: the decoder resynchronised
    tail = decoder.feed(b"\r\n" + RAD8 + b"\r\n")
    assert [r.spo2 for r in tail][-1:] == [98.0]


@given(st.lists(st.integers(1, 50), min_size=1, max_size=30))
def test_any_split_gives_the_same_records(cuts: list[int]) -> None:
    stream = (RAD8 + b"\r\n" + RADICAL5 + b"\r\n" + RAD8_PVI + b"\r\n") * 2
    decoder = LineDecoder(DriverStats())
    records = [r for piece in pieces(stream, cuts * 20) for r in decoder.feed(piece)]
    assert [r.spo2 for r in records] == [98.0, 95.0, 97.0] * 2
