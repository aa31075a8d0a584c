"""The GE S/5 codec: official request vectors, hand-built records, round trips, garbage, NIBP, time.

Expected bytes and values are written by hand from the GE Computer Interface specification's
Appendix A vectors (docs/devices.md Appendix A) and the BASIC layout table of docs/ge_s5.md
§4.1 (offsets in the 270-byte class: ecg 0, p1 16, p2 30, p3 44, p4 58, nibp 72, SpO2 118,
p5 240, p6 254; record = 40-byte header + 4-byte time + class + marker, reserved, class word).
"""

from __future__ import annotations

import itertools
import math
import random
import struct

from hypothesis import given
from hypothesis import strategies as st

from drivers.base import DriverStats
from drivers.ge_s5.codec import (
    BasicValues,
    DriRecord,
    DropReason,
    FrameDecoder,
    GeS5Link,
    Group,
    NibpTracker,
    PhdbRequest,
    basic_samples,
    displayed_basic,
    encode_displayed_record,
    encode_frame,
    encode_request,
    parse_request,
    request_displayed,
    request_stop,
)
from drivers.ge_s5.spec import SPEC
from kernel.vocabulary import Param, Sample, Step
from simulators.ge_s5 import GeS5Side
from simulators.scenarios import build_scenario
from tests.helpers import pieces

# ---------------------------------------------------------------------------- official vectors

# [CI] Appendix A, as listed in docs/devices.md Appendix A.
DISPLAY_10S = bytes.fromhex(
    "7e 31 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 ff 00 00 00 00 00 00 00 00"
    " 00 00 00 00 00 00 00 00 00 00 01 0a 00 0e 00 00 00 00 00 49 7e"
)
STOP_DISPLAY = bytes.fromhex(
    "7e 31 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 ff 00 00 00 00 00 00 00 00"
    " 00 00 00 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 00 31 7e"
)
TREND_60S = bytes.fromhex(
    "7e 31 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 ff 00 00 00 00 00 00 00 00"
    " 00 00 00 00 00 00 00 00 00 00 03 3c 00 0e 00 00 00 00 00 7d 5d 7e"
)
STOP_TREND_60S = bytes.fromhex(
    "7e 31 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 ff 00 00 00 00 00 00 00 00"
    " 00 00 00 00 00 00 00 00 00 00 03 00 00 00 00 00 00 00 00 33 7e"
)
START_ECG1_WAVE = bytes.fromhex(
    "7e 48 00 00 00 00 00 00 00 00 00 00 00 00 00 01 00 00 00 00 00 00 ff 00 00 00 00 00 00 00 00"
    " 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01 ff 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00"
    " 00 00 00 00 00 00 00 00 00 00 00 48 7e"
)
STOP_WAVE = bytes.fromhex(
    "7e 48 00 00 00 00 00 00 00 00 00 00 00 00 00 01 00 00 00 00 00 00 ff 00 00 00 00 00 00 00 00"
    " 00 00 00 00 00 00 00 00 00 00 01 00 00 00 ff 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00"
    " 00 00 00 00 00 00 00 00 00 00 00 48 7e"
)
# What the driver sends: displayed values every 5 s, BASIC only. Not official; written by hand
# from the layout: checksum 0x31 + 0xff + 0x01 + 0x05 = 0x136 -> 0x36.
DISPLAY_5S_BASIC = bytes.fromhex(
    "7e 31 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 ff 00 00 00 00 00 00 00 00"
    " 00 00 00 00 00 00 00 00 00 00 01 05 00 00 00 00 00 00 00 36 7e"
)


def test_official_phdb_request_vectors_byte_exact() -> None:
    assert request_displayed(10, 0x0E) == DISPLAY_10S
    assert request_stop() == STOP_DISPLAY
    # the checksum 0x7d is itself escaped as 7d 5d
    assert encode_frame(encode_request(3, 60, 0x0E)) == TREND_60S
    assert encode_frame(encode_request(3, 0, 0)) == STOP_TREND_60S
    assert request_displayed(5) == DISPLAY_5S_BASIC


def test_official_waveform_vectors_frame_byte_exact_and_are_unsupported() -> None:
    for vector in (START_ECG1_WAVE, STOP_WAVE):
        record = vector[1:-2]  # between the flags, without the checksum 0x48
        assert len(record) == 72
        assert encode_frame(record) == vector
    stats = DriverStats()
    assert FrameDecoder(stats).feed(START_ECG1_WAVE + STOP_WAVE) == []
    assert stats.frames == 0
    assert stats.dropped == {DropReason.UNSUPPORTED: 2}


def test_official_requests_decode() -> None:
    stats = DriverStats()
    records = FrameDecoder(stats).feed(DISPLAY_10S + STOP_DISPLAY + TREND_60S + STOP_TREND_60S)
    assert [parse_request(r) for r in records] == [
        PhdbRequest(1, 10, 0x0E),
        PhdbRequest(1, 0, 0),
        PhdbRequest(3, 60, 0x0E),
        PhdbRequest(3, 0, 0),
    ]
    assert stats.frames == 4
    assert not stats.dropped


# ---------------------------------------------------------------------------- hand-built records


def hand_frame(record: bytes) -> bytes:
    """Flags, escapes and checksum as [CI] p.3-4 describes them, written out byte by byte."""
    payload = record + bytes([sum(record) % 256])
    out = bytearray([0x7E])
    for b in payload:
        if b in {0x7E, 0x7D}:
            out += bytes([0x7D, b ^ 0x20])
        else:
            out.append(b)
    out.append(0x7E)
    return bytes(out)


GroupSpec = tuple[int, int, tuple[int, ...]]


def hand_displayed(groups: dict[int, GroupSpec], *, r_time: int, r_nbr: int = 0) -> bytes:
    """A DISPL record, BASIC class, laid out by hand; groups not given are all zero (absent)."""
    body = bytearray(270)
    for offset, (status, label, values) in groups.items():
        struct.pack_into("<IH", body, offset, status, label)
        struct.pack_into(f"<{len(values)}h", body, offset + 6, *values)
    subrecord = struct.pack("<I", r_time) + bytes(body) + struct.pack("<BBH", 0, 0, 0x00B1)
    header = struct.pack("<hBBHIBBHh", 40 + 278, r_nbr, 11, 0, r_time, 0, 0, 0, 0)
    descriptors = struct.pack("<hB", 0, 1) + struct.pack("<hB", 0, 0xFF) + bytes(18)
    return header + descriptors + subrecord


ECG, P1, P2, NIBP, SPO2 = 0, 16, 30, 72, 118
ON = 0x3  # exists, active
ECG_ON = 0x3 | (1 << 3)  # HR source ECG
INVALID = -32767


def decode_all(frames: bytes) -> tuple[list[DriRecord], DriverStats]:
    stats = DriverStats()
    return FrameDecoder(stats).feed(frames), stats


def test_hand_built_record_decodes_to_the_documented_fields() -> None:
    record = hand_displayed(
        {
            ECG: (ECG_ON, 0x0200, (125, 10, 20, 30, 14)),  # HR 125 = 0x7d: escaped on the wire
            P1: (ON, 2, (2500, 500, 1200, 70)),  # CVP: not an arterial line
            P2: (ON, 1, (12050, 8025, 9500, 71)),  # ART
            NIBP: (ON, 1 << 3, (13100, 8400, 9967, 69)),
            SPO2: (ON, 0, (9750, 126, 350, INVALID)),  # PR 126 = 0x7e
        },
        r_time=1_700_000_000,
        r_nbr=7,
    )
    records, stats = decode_all(hand_frame(record))
    assert stats.frames == 1
    (rec,) = records
    assert (rec.r_nbr, rec.dri_level, rec.plug_id, rec.r_time) == (7, 11, 0, 1_700_000_000)
    basic = displayed_basic(rec)
    assert basic is not None
    assert basic.time == 1_700_000_000
    assert basic.ecg == Group(ECG_ON, 0x0200, (125, 10, 20, 30, 14))
    assert basic.pressures[0] == Group(ON, 2, (2500, 500, 1200, 70))
    assert basic.pressures[1] == Group(ON, 1, (12050, 8025, 9500, 71))
    assert basic.pressures[2] == Group(0, 0, (0, 0, 0, 0))
    assert basic.nibp == Group(ON, 8, (13100, 8400, 9967, 69))
    assert basic.spo2 == Group(ON, 0, (9750, 126, 350, INVALID))
    samples = basic_samples(basic, t=50.0, device_id="ge", nibp=True)
    assert [(s.param, s.value, s.valid, s.reason) for s in samples] == [
        (Param.HR, 125.0, True, None),
        (Param.PR, 126.0, True, None),
        (Param.SPO2, 97.5, True, None),
        (Param.ABP_SYS, 120.5, True, None),
        (Param.ABP_DIA, 80.25, True, None),
        (Param.ABP_MEAN, 95.0, True, None),
        (Param.NIBP_SYS, 131.0, True, None),
        (Param.NIBP_DIA, 84.0, True, None),
        (Param.NIBP_MEAN, 99.67, True, None),
    ]
    assert {(s.t, s.device_id) for s in samples} == {(50.0, "ge")}
    hr, pr, spo2 = samples[:3]
    assert (hr.unit, hr.mdc, pr.mdc, spo2.unit, spo2.mdc) == ("/min", 147842, 149530, "%", 150456)
    assert (samples[3].mdc, samples[6].unit, samples[6].mdc) == (150037, "mm[Hg]", 150021)


def test_encoder_puts_fields_at_the_documented_record_offsets() -> None:
    basic = BasicValues(
        ecg=Group(ECG_ON, 0x0200, (72, 1, 2, 3, 4)),
        pressures=(Group(ON, 1, (12000, 8000, 9300, 72)), *[Group(0, 0, (INVALID,) * 4)] * 5),
        nibp=Group(ON, 0x0108, (12500, 8200, 9633, INVALID)),
        spo2=Group(ON, 0, (9800, 71, INVALID, INVALID)),
    )
    record = encode_displayed_record(basic, r_time=0x65432100, r_nbr=300, dri_level=11)
    assert len(record) == 318
    # header: r_len, r_nbr (mod 256), dri_level, plug_id, r_time, reserved, r_maintype, sr_desc
    assert struct.unpack_from("<hBBHI", record, 0) == (318, 300 - 256, 11, 0, 0x65432100)
    assert record[10:16] == bytes(6)
    assert record[16:22] == bytes([0, 0, 1, 0, 0, 0xFF])
    # docs/ge_s5.md §4.1 column R (record offsets with BASIC first)
    assert struct.unpack_from("<I", record, 40) == (0x65432100,)
    assert struct.unpack_from("<IHh", record, 44) == (ECG_ON, 0x0200, 72)
    assert struct.unpack_from("<IHhhh", record, 60) == (ON, 1, 12000, 8000, 9300)
    assert struct.unpack_from("<IHhhh", record, 116) == (ON, 0x0108, 12500, 8200, 9633)
    assert struct.unpack_from("<IHhh", record, 162) == (ON, 0, 9800, 71)
    # an absent group the codec does not read: co2 at record offset 176
    assert struct.unpack_from("<IHhhhh", record, 176) == (0, 0, INVALID, INVALID, INVALID, INVALID)
    # marker, reserved, cl_drilvl_subt = class 0 << 8 | level 11 << 4 | DISPL 1
    assert struct.unpack_from("<BBH", record, 314) == (0, 0, 0x00B1)


def test_special_values_give_invalid_samples_named_after_them() -> None:
    names = {
        -32767: "ge_invalid",
        -32766: "ge_not_updated",
        -32765: "ge_discontinuity",
        -32764: "ge_under_range",
        -32763: "ge_over_range",
        -32762: "ge_not_calibrated",
        -32001: "ge_special",
        -32768: "ge_special",
    }
    for raw, reason in names.items():
        basic = BasicValues(
            ecg=Group(ECG_ON, 0, (raw, 0, 0, 0, 0)),
            spo2=Group(ON, 0, (raw, 70, 0, 0)),
        )
        hr, pr, spo2 = basic_samples(basic, t=0.0, device_id="ge")
        assert (hr.param, hr.valid, hr.reason) == (Param.HR, False, reason)
        assert math.isnan(hr.value)
        assert (spo2.param, spo2.valid, spo2.reason) == (Param.SPO2, False, reason)
        assert (pr.value, pr.valid) == (70.0, True)
    # -32000 is the smallest reading: out of range, not special
    basic = BasicValues(spo2=Group(ON, 0, (-32000, 70, 0, 0)))
    _, spo2 = basic_samples(basic, t=0.0, device_id="ge")
    assert (spo2.value, spo2.valid, spo2.reason) == (-320.0, False, "out_of_range")


def test_group_status_and_hr_source() -> None:
    # module not plugged in (exists clear): no samples at all, whatever the values
    basic = BasicValues(
        ecg=Group(0, 0, (72, 0, 0, 0, 0)),
        spo2=Group(0x2, 0, (9800, 72, 0, 0)),
        pressures=(Group(0, 1, (12000, 8000, 9300, 72)), *[Group(0, 0, (0,) * 4)] * 5),
    )
    assert basic_samples(basic, t=0.0, device_id="ge") == ()
    # exists but not measuring: invalid samples that say so
    basic = BasicValues(ecg=Group(0x1 | (1 << 3), 0, (72, 0, 0, 0, 0)))
    (hr,) = basic_samples(basic, t=0.0, device_id="ge")
    assert (hr.value, hr.valid, hr.reason) == (72.0, False, "ge_inactive")
    # HR source 6 (pleth): ecg.hr is a pulse rate, not an ECG heart rate
    basic = BasicValues(ecg=Group(0x3 | (6 << 3), 0, (72, 0, 0, 0, 0)))
    (hr,) = basic_samples(basic, t=0.0, device_id="ge")
    assert (hr.value, hr.valid, hr.reason) == (72.0, False, "ge_hr_not_ecg")
    # HR source 9 (ECG, Mortara), as in the real capture (ecg status 0x4B)
    basic = BasicValues(ecg=Group(0x4B, 0, (72, 0, 0, 0, 0)))
    (hr,) = basic_samples(basic, t=0.0, device_id="ge")
    assert (hr.valid, hr.reason) == (True, None)


def test_first_arterial_channel_only() -> None:
    cvp = Group(ON, 2, (1000, 500, 800, 70))
    art = Group(ON, 1, (11000, 7000, 8300, 70))
    second_art = Group(ON, 1, (9000, 6000, 7000, 70))
    absent = Group(0, 1, (INVALID,) * 4)
    basic = BasicValues(pressures=(absent, cvp, art, second_art, cvp, cvp))
    samples = basic_samples(basic, t=0.0, device_id="ge")
    assert [(s.param, s.value) for s in samples] == [
        (Param.ABP_SYS, 110.0),
        (Param.ABP_DIA, 70.0),
        (Param.ABP_MEAN, 83.0),
    ]


# ---------------------------------------------------------------------------- framing


def test_garbage_between_frames_and_a_truncated_frame_resync() -> None:
    a = hand_frame(hand_displayed({SPO2: (ON, 0, (9700, 60, 0, 0))}, r_time=1000))
    b = hand_frame(hand_displayed({SPO2: (ON, 0, (9600, 61, 0, 0))}, r_time=1005))
    c = hand_frame(hand_displayed({SPO2: (ON, 0, (9500, 62, 0, 0))}, r_time=1010))
    stream = b"\x01\x02junk" + a + b"garbage without flags" + b[: len(b) // 2] + c + b"\x7e\x7e"
    records, stats = decode_all(stream)
    assert [r.r_time for r in records] == [1000, 1010]
    assert stats.frames == 2
    # the junk before the first flag and the garbage are short; the half frame fails its checksum
    assert stats.dropped == {DropReason.TOO_SHORT: 2, DropReason.BAD_CHECKSUM: 1}


def test_bad_escape_length_and_overlong_frames_are_dropped() -> None:
    good = hand_displayed({}, r_time=5)
    assert decode_all(b"\x7e\x7d\x00" + hand_frame(good)[1:])[1].dropped == {
        DropReason.BAD_ESCAPE: 1
    }
    wrong_len = struct.pack("<h", 317) + good[2:]
    records, stats = decode_all(hand_frame(wrong_len))
    assert (records, stats.dropped) == ([], {DropReason.BAD_LENGTH: 1})
    bad_desc = good[:16] + struct.pack("<hB", 300, 1) + good[19:]
    records, stats = decode_all(hand_frame(bad_desc))
    assert (records, stats.dropped) == ([], {DropReason.BAD_SUBRECORD: 1})
    stats = DriverStats()
    decoder = FrameDecoder(stats)
    assert decoder.feed(b"\x00" * 2000) == []
    assert decoder.feed(b"\x00" * 5000) == []
    assert [r.r_time for r in decoder.feed(b"\x7e" + hand_frame(good))] == [5]
    assert stats.dropped == {DropReason.TOO_LONG: 1}


records_st = st.builds(
    lambda r_nbr, level, plug, r_time, sr_type, data: (r_nbr, level, plug, r_time, sr_type, data),
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF_FFFF),
    st.integers(5, 254),  # subrecord types without a fixed size
    st.binary(max_size=1450)
    | st.lists(st.sampled_from(b"\x7e\x7d\x5e\x5d\x00"), max_size=1450).map(bytes),
)


@given(st.lists(records_st, max_size=5))
def test_frame_round_trip(fields: list[tuple[int, int, int, int, int, bytes]]) -> None:
    stream = b""
    for r_nbr, level, plug, r_time, sr_type, data in fields:
        header = struct.pack("<hBBHIBBHh", 40 + len(data), r_nbr, level, plug, r_time, 0, 0, 0, 0)
        descriptors = struct.pack("<hB", 0, sr_type) + struct.pack("<hB", 0, 0xFF) + bytes(18)
        stream += encode_frame(header + descriptors + data)
    records, stats = decode_all(stream)
    assert [(r.r_nbr, r.dri_level, r.plug_id, r.r_time) for r in records] == [f[:4] for f in fields]
    assert [r.subrecords[0].sr_type for r in records] == [f[4] for f in fields]
    assert [r.subrecords[0].data for r in records] == [f[5] for f in fields]
    assert stats.frames == len(fields)
    assert not stats.dropped


raw_values = st.integers(-32000, 32767) | st.sampled_from(
    [-32767, -32766, -32765, -32764, -32763, -32762, -32768]
)


def groups(n: int) -> st.SearchStrategy[Group]:
    return st.builds(
        Group,
        st.integers(0, 0xFFFF_FFFF),
        st.integers(0, 0xFFFF),
        st.tuples(*[raw_values] * n),
    )


@given(
    r_time=st.integers(1, 0xFFFF_FFFF),
    r_nbr=st.integers(0, 255),
    ecg=groups(5),
    pressures=st.tuples(*[groups(4)] * 6),
    nibp=groups(4),
    spo2=groups(4),
)
def test_displayed_record_round_trip(
    r_time: int,
    r_nbr: int,
    ecg: Group,
    pressures: tuple[Group, ...],
    nibp: Group,
    spo2: Group,
) -> None:
    basic = BasicValues(time=r_time, ecg=ecg, pressures=pressures, nibp=nibp, spo2=spo2)
    frame = encode_frame(encode_displayed_record(basic, r_time=r_time, r_nbr=r_nbr))
    records, stats = decode_all(frame)
    assert stats.frames == 1
    (record,) = records
    assert (record.r_time, record.r_nbr) == (r_time, r_nbr)
    assert displayed_basic(record) == basic


@given(
    hr=raw_values,
    spo2=raw_values,
    pr=raw_values,
)
def test_sample_values_scale_and_specials(hr: int, spo2: int, pr: int) -> None:
    basic = BasicValues(ecg=Group(ECG_ON, 0, (hr, 0, 0, 0, 0)), spo2=Group(ON, 0, (spo2, pr, 0, 0)))
    frame = encode_frame(encode_displayed_record(basic, r_time=1))
    (record,), _ = decode_all(frame)
    decoded = displayed_basic(record)
    assert decoded is not None
    samples = basic_samples(decoded, t=1.0, device_id="ge")
    expected = {Param.HR: (hr, 1), Param.PR: (pr, 1), Param.SPO2: (spo2, 100)}
    for sample in samples:
        raw, scale = expected[sample.param]
        if raw <= -32001:
            assert math.isnan(sample.value)
            assert not sample.valid
            assert sample.reason is not None
            assert sample.reason.startswith("ge_")
        else:
            assert sample.value == raw / scale


@given(st.lists(st.binary(max_size=300), max_size=20))
def test_arbitrary_bytes_never_raise_and_every_frame_is_accounted_for(chunks: list[bytes]) -> None:
    stats = DriverStats()
    decoder = FrameDecoder(stats)
    records = [r for chunk in chunks for r in decoder.feed(chunk)]
    assert stats.frames == len(records)
    # afterwards a good frame still decodes: the next flag resynchronised the decoder
    good = hand_frame(hand_displayed({}, r_time=77))
    assert [r.r_time for r in decoder.feed(b"\x7e" + good)][-1:] == [77]


@given(st.lists(st.integers(1, 200), min_size=1, max_size=30))
def test_any_split_gives_the_same_records(cuts: list[int]) -> None:
    frames = [
        hand_frame(hand_displayed({ECG: (ECG_ON, 0, (0x7E, 0, 0, 0, 0))}, r_time=t))
        for t in (0x7E7D, 0x7D7E, 3)
    ]
    stream = (b"".join(frames) + b"noise") * 2
    decoder = FrameDecoder(DriverStats())
    records = [r for piece in pieces(stream, cuts * 20) for r in decoder.feed(piece)]
    assert [r.r_time for r in records] == [0x7E7D, 0x7D7E, 3] * 2


# ---------------------------------------------------------------------------- NIBP


def nibp_record(label: int, values: tuple[int, int, int], r_time: int, status: int = ON) -> bytes:
    return hand_frame(hand_displayed({NIBP: (status, label, (*values, INVALID))}, r_time=r_time))


MEASURING, CALIBRATING, OLD, AUTO = 1 << 5, 1 << 7, 1 << 8, 1 << 3
NONE = (INVALID, INVALID, INVALID)
FIRST = (12000, 8000, 9333)
SECOND = (13000, 8500, 10000)


def nibp_triples(link: GeS5Link, frames: list[bytes]) -> list[tuple[float, ...]]:
    """For each record: the NIBP values it reported (empty tuple for none)."""
    out = []
    for k, frame in enumerate(frames):
        got = link.receive(frame, 1000.0 + 5 * k).samples
        cuff = [s for s in got if s.param.name.startswith("NIBP")]
        assert [s.param for s in cuff] in ([], [Param.NIBP_SYS, Param.NIBP_DIA, Param.NIBP_MEAN])
        out.append(tuple(s.value for s in cuff))
    return out


def test_nibp_reported_once_per_new_determination() -> None:
    sequence = [
        (AUTO, NONE),  # no determination yet
        (AUTO | MEASURING, NONE),  # first measurement
        (AUTO, FIRST),  # done: new (a)
        (AUTO, FIRST),  # still displayed: not new
        (AUTO | OLD, FIRST),  # a minute later: not new
        (AUTO | OLD | MEASURING, FIRST),  # the next cuff inflation
        (AUTO | MEASURING, FIRST),  # old flag cleared while measuring: still nothing
        (AUTO, FIRST),  # done with the very same values: new (a)
        (AUTO | OLD, FIRST),
        (AUTO, SECOND),  # fresh data replaced old data: new (b)
        (AUTO, SECOND),
        (AUTO | CALIBRATING, (14000, 9000, 10667)),  # calibrating: never a determination
        (AUTO, (14000, 9000, 10667)),  # different values, fresh: new (c)
    ]
    frames = [nibp_record(label, v, 1000 + 5 * k) for k, (label, v) in enumerate(sequence)]
    link = GeS5Link("ge", DriverStats())
    assert nibp_triples(link, frames) == [
        (),
        (),
        (120.0, 80.0, 93.33),
        (),
        (),
        (),
        (),
        (120.0, 80.0, 93.33),
        (),
        (130.0, 85.0, 100.0),
        (),
        (),
        (140.0, 90.0, 106.67),
    ]


def test_nibp_old_data_at_start_is_not_new_and_a_reconnection_does_not_repeat() -> None:
    link = GeS5Link("ge", DriverStats())
    assert nibp_triples(link, [nibp_record(OLD, FIRST, 1000)]) == [()]
    tracker = NibpTracker()
    first = GeS5Link("ge", DriverStats(), nibp=tracker)
    assert nibp_triples(first, [nibp_record(0, FIRST, 1000)]) == [(120.0, 80.0, 93.33)]
    again = GeS5Link("ge", DriverStats(), nibp=tracker)  # the driver's next connection
    assert nibp_triples(again, [nibp_record(0, FIRST, 1020)]) == [()]
    # a transition waits for readable values; a module that stops existing changes nothing
    frames = [
        nibp_record(MEASURING, NONE, 1025),
        nibp_record(0, NONE, 1030),
        nibp_record(0, FIRST, 1035, status=0),
        nibp_record(0, FIRST, 1040),
    ]
    assert nibp_triples(again, frames) == [(), (), (), (120.0, 80.0, 93.33)]


# ---------------------------------------------------------------------------- time and timer


def spo2_frame(r_time: int) -> bytes:
    return hand_frame(hand_displayed({SPO2: (ON, 0, (9700, 70, 0, 0))}, r_time=r_time))


def test_samples_are_stamped_with_the_anchored_monitor_time() -> None:
    stats = DriverStats()
    link = GeS5Link("ge", stats)
    base = 1_750_000_000
    # receive times jitter by up to 0.4 s; the monitor's r_time steps by exactly 5 s
    received = [(base, 1000.25), (base + 5, 1005.6), (base + 10, 1009.9), (base + 15, 1015.0)]
    times = []
    for r_time, now in received:
        got = link.receive(spo2_frame(r_time), now).samples
        assert len({s.t for s in got}) == 1
        times.append(got[0].t)
    assert times == [1000.25, 1005.25, 1010.25, 1015.25]
    assert not stats.dropped
    # the monitor's clock is set an hour ahead: re-anchored on the daemon clock, counted
    got = link.receive(spo2_frame(base + 3620), 1020.5).samples
    assert {s.t for s in got} == {1020.5}
    assert stats.dropped == {DropReason.RETIMED: 1}
    got = link.receive(spo2_frame(base + 3625), 1025.3).samples
    assert {s.t for s in got} == {1025.5}
    # set back by 7 s (within the re-anchor margin): the record is older than the last one
    assert link.receive(spo2_frame(base + 3623), 1030.4).samples == ()
    assert stats.dropped == {DropReason.RETIMED: 1, DropReason.TIME_BACKWARDS: 1}
    got = link.receive(spo2_frame(base + 3630), 1035.1).samples
    assert {s.t for s in got} == {1030.5}


def test_anchor_is_exact_on_real_epoch_times() -> None:
    link = GeS5Link("ge", DriverStats())
    now = 1_761_234_567.123_456
    r_time = 1_761_230_000
    t = [link.receive(spo2_frame(r_time + 5 * k), now + 5 * k).samples[0].t for k in range(50)]
    assert {b - a for a, b in itertools.pairwise(t)} == {5.0}
    assert abs(t[0] - now) < 1 / 1024


def test_link_requests_at_start_and_again_after_silence() -> None:
    link = GeS5Link("ge", DriverStats())
    assert link.start(100.0) == DISPLAY_5S_BASIC
    assert link.timer(114.0) == b""
    assert link.timer(115.0) == DISPLAY_5S_BASIC  # no record 15 s after the request
    assert link.timer(129.0) == b""
    link.receive(spo2_frame(1), 128.0)
    assert link.timer(142.0) == b""
    assert link.timer(143.0) == DISPLAY_5S_BASIC  # 15 s after the last record


def test_driver_line_settings() -> None:
    line = SPEC.serial_line
    assert (line.baudrate, line.bytesize, line.parity, line.stopbits, line.rtscts) == (
        19200,
        8,
        "E",
        1,
        True,
    )
    assert SPEC.quiet_s == 15.0


# ---------------------------------------------------------------------------- the simulator


def play(side: GeS5Side, scenario: list[Sample | Step], link: GeS5Link) -> list[Sample]:
    """Feed the scenario to the side second by second, decoding its frames with `link`."""
    out: list[Sample] = []
    second: list[Sample] = []
    items = [i for i in scenario if isinstance(i, Sample)]
    for item in [*items, None]:
        if second and (item is None or item.t != second[0].t):
            for frame in side.second(second, second[0].t):
                out += link.receive(frame, second[0].t + 0.25).samples
            second = []
        if item is not None:
            second.append(item)
    return out


def test_simulator_is_silent_until_asked_then_sends_every_5_s_and_stops() -> None:
    t0 = 1_800_000_000.0
    scenario = [i for i in build_scenario("normal-session", t0=t0, seed=3) if i.t < t0 + 400]
    side = GeS5Side()
    link = GeS5Link("mon1", DriverStats())
    assert side.second([s for s in scenario if isinstance(s, Sample) and s.t == t0], t0) == []
    assert side.receive(link.start(t0), t0) == []
    samples = play(side, scenario, link)
    hr = [s for s in samples if s.param is Param.HR]
    assert len(hr) == 80  # t0 .. t0 + 395, one record every 5 s
    assert {b.t - a.t for a, b in itertools.pairwise(hr)} == {5.0}
    assert all(s.valid for s in samples)
    assert not any(s.param.name.startswith("ABP") for s in samples)  # P1 not plugged in
    # one NIBP triple per determination (at 60 and 360 s), with the scenario's values
    cuff = [s for s in samples if s.param.name.startswith("NIBP")]
    truth = [s for s in scenario if isinstance(s, Sample) and s.param.name.startswith("NIBP")]
    assert [s.value for s in cuff] == [s.value for s in truth]
    assert [s.t for s in cuff] == [t0 + 60.25] * 3 + [t0 + 360.25] * 3
    # each HR sample is the scenario HR of its second
    by_t = {s.t: s.value for s in scenario if isinstance(s, Sample) and s.param is Param.HR}
    assert all(s.value == by_t[s.t - 0.25] for s in hr)
    assert side.receive(request_stop(), t0 + 400) == []
    last = [s for s in scenario if isinstance(s, Sample)][-3:]
    assert side.second(last, t0 + 405) == []


def test_simulator_single_shot_and_repeat_window() -> None:
    side = GeS5Side()
    once = encode_frame(encode_request(1, -1, 0))
    (frame,) = side.receive(once, 50.0)
    (record,), _ = decode_all(frame)
    assert record.r_time == 50
    assert side.receive(once, 53.0) == []  # within 5 s of the previous request: ignored
    assert len(side.receive(once, 58.5)) == 1
    assert side.receive(encode_frame(encode_request(1, 3, 0)), 70.0) == []  # below 5 s


def test_simulator_corruption_is_a_checksum_error() -> None:
    side = GeS5Side()
    frame = side.receive(encode_frame(encode_request(1, -1, 0)), 1.0)[0]
    rng = random.Random(7)  # noqa: S311 - simulated damage, not secrets
    for _ in range(200):
        damaged = side.corrupt(frame, rng)
        assert len(damaged) == len(frame)
        records, stats = decode_all(damaged)
        assert records == []
        assert stats.dropped == {DropReason.BAD_CHECKSUM: 1}
