"""Ivy 450C ANSAR-B codec: messages by hand from docs/devices.md §2.5, round trips, noise."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from drivers.base import DriverStats
from drivers.ivy_450c.codec import (
    IvyLink,
    MessageDecoder,
    decode_capture,
    encode_message,
    message_samples,
)
from drivers.samples import DeterminationMemory
from kernel.vocabulary import Param
from tests.helpers import pieces

WAVES = bytes(range(256)) + bytes(range(144))  # every byte value, 0xFE and 0xFF included


def message(*lines: bytes) -> bytes:
    """A message as the monitor frames it: FF, the magic, 400 waveform bytes, CR lines, FE."""
    return b"\xff" + b"ANSAR-B " + WAVES + b"".join(line + b"\r" for line in lines) + b"\xfe"


FULL = message(
    b"HR=1;80;ECG-II-DIAG;",
    b"SPO2=1;100;PR=80 ;",  # the pulse rate in the SpO2 line, with its trailing space
    b"NIBP=4;120;80;93;72;NIBP;0;",
    b"P1=3;118;76;90;ART;0;",
    b"P2=3;12;4;8;CVP;0;",  # not an arterial line: not in Vigil's vocabulary
    b"T1=1;370;T1;0;",
    b"RR=1;16;RESP;0;",
    b"ETCO2=1;38;CO2;0;",
)


def values(data: bytes) -> list[tuple[str, float, bool, str | None]]:
    samples, _ = decode_capture(data, device_id="ivy")
    return [(s.param.value, s.value, s.valid, s.reason) for s in samples]


def test_a_full_message_gives_every_mapped_parameter() -> None:
    assert values(FULL) == [
        ("HR", 80.0, True, None),
        ("RR", 16.0, True, None),
        ("ETCO2", 38.0, True, None),
        ("SPO2", 100.0, True, None),
        ("PR", 80.0, True, None),
        ("ABP_SYS", 118.0, True, None),
        ("ABP_DIA", 76.0, True, None),
        ("ABP_MEAN", 90.0, True, None),
        ("NIBP_SYS", 120.0, True, None),
        ("NIBP_DIA", 80.0, True, None),
        ("NIBP_MEAN", 93.0, True, None),
    ]


def test_samples_carry_units_mdc_device_and_the_capture_time_line() -> None:
    samples, stats = decode_capture(FULL + FULL, device_id="ivy")
    hr = [s for s in samples if s.param is Param.HR]
    assert [(s.t, s.unit, s.mdc, s.device_id) for s in hr] == [
        (0.0, "/min", 147842, "ivy"),
        (1.0, "/min", 147842, "ivy"),
    ]
    assert (stats.frames, stats.samples) == (2, len(samples))
    assert not stats.dropped


def test_empty_values_are_missing_and_give_invalid_samples() -> None:
    data = message(b"HR=1;;ECG-II-DIAG;", b"SPO2=1;;PR= ;", b"NIBP=4;;;;;NIBP;;")
    # no determination yet: the empty NIBP line gives nothing, not three missing values
    got = values(data)
    assert [(p, ok, r) for p, _, ok, r in got] == [
        ("HR", False, "no_value"),
        ("SPO2", False, "no_value"),
        ("PR", False, "no_value"),
    ]
    assert all(math.isnan(v) for _, v, _, _ in got)


def test_an_implausible_value_is_out_of_range() -> None:
    assert values(message(b"HR=1;400;ECG-II-DIAG;")) == [("HR", 400.0, False, "out_of_range")]


def test_the_displayed_determination_is_passed_on_once() -> None:
    nibp = b"NIBP=4;120;80;93;72;NIBP;0;"
    later = b"NIBP=4;131;85;100;70;NIBP;0;"
    got = values(message(nibp) + message(nibp) + message(nibp) + message(later))
    assert [v for p, v, _, _ in got if p == "NIBP_SYS"] == [120.0, 131.0]


def test_the_cuff_memory_outlives_a_link() -> None:
    cuff = DeterminationMemory()
    data = message(b"NIBP=4;120;80;93;72;NIBP;0;")
    first = IvyLink("ivy", DriverStats(), cuff).receive(data, 10.0).samples
    again = IvyLink("ivy", DriverStats(), cuff).receive(data, 20.0).samples
    assert [s.param for s in first] == [Param.NIBP_SYS, Param.NIBP_DIA, Param.NIBP_MEAN]
    assert again == ()


def test_a_capture_that_begins_mid_message_drops_the_partial_message() -> None:
    # the first 300 bytes of a message were before the capture began
    samples, stats = decode_capture(FULL[300:] + FULL, device_id="ivy")
    assert len(samples) == 11
    assert stats.frames == 1
    assert stats.dropped == {"partial": 1}


def test_a_message_cut_short_is_truncated_and_the_next_one_decodes() -> None:
    samples, stats = decode_capture(FULL[:200] + FULL + FULL[:450], device_id="ivy")
    assert stats.frames == 1
    assert len(samples) == 11
    # the cut one before a whole one, and the one the capture's end cut off
    assert stats.dropped == {"truncated": 1, "partial": 1}


def test_rejections_name_their_reason() -> None:
    cases = {
        "not_ascii": message(b"HR=1;8\xb0;ECG-II-DIAG;"),
        "malformed": message(b"HR=3;80;ECG;"),  # three values announced, one given
    }
    for reason, data in cases.items():
        samples, stats = decode_capture(data + FULL, device_id="ivy")
        assert stats.dropped == {reason: 1}, reason
        assert stats.frames == 1
        assert len(samples) == 11
    assert decode_capture(message(b"HR=1;80;X;", b"HR=1;81;X;"), device_id="i")[1].dropped == {
        "malformed": 1
    }
    assert decode_capture(message(b"HR=1;eighty;X;"), device_id="i")[1].dropped == {"malformed": 1}


def test_a_message_without_end_is_dropped_once_and_the_stream_recovers() -> None:
    endless = b"\xffANSAR-B " + WAVES + b"HR=1;80;X;\r" * 200
    decoder = MessageDecoder()
    assert decoder.feed(endless) == []
    assert decoder.stats.dropped == {"too_long": 1}
    assert decoder.feed(b"HR=1;80;X;\r" * 50) == []  # more of it: the same message, not again
    got = decoder.feed(FULL)
    assert decoder.stats.dropped == {"too_long": 1}
    assert len(got) == decoder.stats.frames == 1


def test_the_link_stamps_samples_with_the_receive_time_and_sends_nothing() -> None:
    link = IvyLink("ivy", DriverStats())
    assert link.start(0.0) == b""
    assert link.timer(1.0) == b""
    got = link.receive(FULL[:100], 5.0)
    assert got.samples == ()
    got = link.receive(FULL[100:], 6.0)
    assert {s.t for s in got.samples} == {6.0}
    assert got.reply == b""


readings = st.one_of(st.none(), st.integers(0, 250).map(float))


@given(hr=readings, spo2=readings, pr=readings, sys=st.integers(60, 250), rr=st.integers(0, 80))
def test_round_trip(
    hr: float | None, spo2: float | None, pr: float | None, sys: int, rr: int
) -> None:
    nibp = (float(sys), float(sys - 40), float(sys - 27))
    data = encode_message(hr=hr, spo2=spo2, pr=pr, nibp=nibp, rr=float(rr))
    decoder = MessageDecoder()
    (got,) = decoder.feed(data)
    samples = message_samples(got, t=1.0, device_id="x", cuff=DeterminationMemory())
    by_param = {s.param: s.value for s in samples}
    sent_values = ((Param.HR, hr), (Param.SPO2, spo2), (Param.PR, pr), (Param.RR, float(rr)))
    for param, sent in sent_values:
        if sent is None:
            assert math.isnan(by_param[param]), param
        else:
            assert by_param[param] == sent, param
    assert (by_param[Param.NIBP_SYS], by_param[Param.NIBP_DIA], by_param[Param.NIBP_MEAN]) == nibp
    assert decoder.stats.frames == 1
    assert not decoder.stats.dropped


@given(st.lists(st.binary(max_size=600), max_size=12))
def test_arbitrary_bytes_never_raise_and_a_whole_message_after_them_decodes(
    chunks: list[bytes],
) -> None:
    decoder = MessageDecoder()
    for chunk in chunks:
        decoder.feed(chunk)
    # whatever came before, a whole message after a fresh start is decoded
    got = decoder.feed(FULL + FULL)
    assert len(got) >= 1
    assert got[-1].lines["HR"].values == (80.0,)


@given(st.lists(st.integers(1, 120), min_size=1, max_size=30))
def test_any_split_gives_the_same_messages(cuts: list[int]) -> None:
    data = FULL + message(b"HR=1;81;X;") + FULL
    decoder = MessageDecoder()
    got = [r for piece in pieces(data, cuts) for r in decoder.feed(piece)]
    assert [m.lines["HR"].values for m in got] == [(80.0,), (81.0,), (80.0,)]
    assert not decoder.stats.dropped
