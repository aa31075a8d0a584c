"""IntelliVue framing and messages against the documented bytes; the session in memory.

Expected bytes are the examples of docs/intellivue.md (VSCaptureMP's messages and frames
computed there with a second implementation of the FCS) or are written here with struct.pack
from the guide's layout, never produced by the encoder under test.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.base import DriverStats
from drivers.intellivue.codec import (
    CuffMemory,
    IntelliVueLink,
    MessageDrop,
    PollMode,
    count_unused,
    decode_capture,
    poll_samples,
)
from drivers.intellivue.framing import DropReason, FrameDecoder, encode_frame, escape, fcs16
from drivers.intellivue.messages import (
    ABORT,
    NUMERICS,
    RELEASE_REQUEST,
    RELEASE_RESPONSE,
    ContextPoll,
    EventReport,
    Linked,
    NuObservation,
    Observation,
    PollRequest,
    PollResult,
    Session,
    SessionMessage,
    UserInfo,
    association_request,
    association_response,
    decode_float,
    encode_float,
    event_report_result,
    extended_poll_request,
    mds_create_event,
    parse_message,
    poll_request,
    poll_result,
    poll_results,
)
from drivers.link import ProtocolError
from kernel.vocabulary import Param, Sample
from simulators.intellivue import IntelliVueSide
from tests.helpers import pieces


def hexb(text: str) -> bytes:
    """Bytes from a hex dump with optional ``0000:`` offsets."""
    return bytes.fromhex(" ".join(part for part in text.split() if not part.endswith(":")))


# docs/intellivue.md §2.1: the association request VSCaptureMP sends over serial
AARQ = hexb("""
0000: 0D FF 01 28 05 08 13 01 00 16 01 02 80 00 14 02
0010: 00 02 C1 FF 01 16 31 80 A0 80 80 01 01 00 00 A2
0020: 80 A0 03 00 00 01 A4 80 30 80 02 01 01 06 04 52
0030: 01 00 01 30 80 06 02 51 01 00 00 00 00 30 80 02
0040: 01 02 06 0C 2A 86 48 CE 14 02 01 00 00 00 01 01
0050: 30 80 06 0C 2A 86 48 CE 14 02 01 00 00 00 02 01
0060: 00 00 00 00 00 00 61 80 30 80 02 01 01 A0 80 60
0070: 80 A1 80 06 0C 2A 86 48 CE 14 02 01 00 00 00 03
0080: 01 00 00 BE 80 28 80 06 0C 2A 86 48 CE 14 02 01
0090: 00 00 00 01 01 02 01 02 81 82 00 80 80 00 00 00
00A0: 40 00 00 00 00 00 00 00 80 00 00 00 20 00 00 00
00B0: 00 00 00 00 00 02 00 64 00 01 00 28 80 00 00 00
00C0: 00 00 0F A0 00 00 05 B0 00 00 05 B0 FF FF FF FF
00D0: 60 00 00 00 00 01 00 0C F0 01 00 08 8E 00 00 00
00E0: 00 00 00 00 01 02 00 34 00 06 00 30 00 01 00 21
00F0: 00 00 00 01 00 01 00 06 00 00 00 C9 00 01 00 09
0100: 00 00 00 3C 00 01 00 05 00 00 00 10 00 01 00 2A
0110: 00 00 00 01 00 01 00 36 00 00 00 01 00 00 00 00
0120: 00 00 00 00 00 00 00 00 00 00 00 00
""")
# docs/intellivue.md §1.4: VSCaptureMP's single poll of numerics, on the wire
POLL_WIRE = hexb(
    "C0 11 01 00 24 E1 00 00 02 00 01 00 1C 00 00 00 07 00 16 00 21 00 00 00 00"
    "00 00 00 00 0C 16 00 08 00 01 00 01 00 06 00 00 8E 95 C1"
)
# docs/intellivue.md §1.4: the release request, whose C1 is escaped
RELEASE_WIRE = hexb(
    "C0 11 01 00 1A 09 18 7D E1 16 61 80 30 80 02 01 01 A0 80 62 80 80 01 00 00 00 00 00 00"
    "00 00 00 41 08 C1"
)
# docs/intellivue.md §3: an MDS Create Event Report and the result confirming it (invoke 1, time 0)
MDS_EVENT = hexb(
    "E1 00 00 02 00 01 00 38 00 01 00 01 00 32 00 21 00 00 00 00 00 12 34 56 0D 06 00 24"
    "00 21 00 00 00 00 00 03 00 1A 09 87 00 08 20 24 05 17 10 30 00 00 09 8F 00 04 00 12"
    "34 56 09 A7 00 02 00 06"
)
MDS_RESULT_WIRE = hexb(
    "C0 11 01 00 1C E1 00 00 02 00 02 00 14 00 01 00 01 00 0E 00 21 00 00 00 00 00 00 00 00"
    "0D 06 00 00 C3 09 C1"
)
# docs/intellivue.md §2.2: the constructed association response (server, warm start, MTU 1000)
AARE = hexb("""
0000: 0E CF 05 08 13 01 00 16 01 02 80 00 14 02 00 02
0010: C1 BF 31 80 A0 80 80 01 01 00 00 A2 80 A0 03 00
0020: 00 01 A5 80 30 80 80 01 00 81 02 51 01 00 00 30
0030: 80 80 01 00 81 0C 2A 86 48 CE 14 02 01 00 00 00
0040: 02 01 00 00 00 00 61 80 30 80 02 01 01 A0 80 61
0050: 80 A1 80 06 0C 2A 86 48 CE 14 02 01 00 00 00 03
0060: 01 00 00 A2 03 02 01 00 A3 05 A1 03 02 01 00 BE
0070: 80 28 80 02 01 02 81 81 48 80 00 00 00 40 00 00
0080: 00 00 00 00 00 00 80 00 00 40 00 00 00 00 00 00
0090: 00 00 01 00 2C 00 01 00 28 80 00 00 00 00 00 0F
00A0: A0 00 00 03 E8 00 00 03 E8 FF FF FF FF 60 00 00
00B0: 00 00 01 00 0C F0 01 00 08 88 00 00 00 00 00 00
00C0: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
00D0: 00
""")
# docs/intellivue.md §6.3: a single poll result, HR 72, SpO2 98, pleth PR 72, NBP 120/80/93
POLL_RESULT = hexb("""
0000: E1 00 00 02 00 02 00 96 00 00 00 07 00 90 00 21
0010: 00 00 00 00 0C 16 00 86 00 01 00 12 53 96 20 24
0020: 05 17 10 30 01 00 00 01 00 06 08 03 00 01 00 6E
0030: 00 00 00 04 00 68 00 10 00 01 00 0E 09 50 00 0A
0040: 41 82 00 00 0A A0 00 00 00 48 00 11 00 01 00 0E
0050: 09 50 00 0A 4B B8 00 00 02 20 00 00 00 62 00 12
0060: 00 01 00 0E 09 50 00 0A 48 22 00 00 0A A0 00 00
0070: 00 48 00 13 00 01 00 26 09 4B 00 22 00 03 00 1E
0080: 4A 05 00 00 0F 20 00 00 00 78 4A 06 00 00 0F 20
0090: 00 00 00 50 4A 07 00 00 0F 20 00 00 00 5D
""")
STAMP = hexb("20 24 05 17 10 30 00 00")


# ------------------------------------------------------------------ framing


def test_fcs_is_crc16_x25() -> None:
    assert fcs16(b"123456789") == 0x906E
    assert fcs16(b"") == 0x0000


def test_poll_request_frame_is_vscapturemps_byte_for_byte() -> None:
    user = poll_request(0, 1)
    assert encode_frame(user) == POLL_WIRE
    assert FrameDecoder().feed(POLL_WIRE) == [user]


def test_escaping_of_c1_in_user_data() -> None:
    assert encode_frame(RELEASE_REQUEST) == RELEASE_WIRE
    assert FrameDecoder().feed(RELEASE_WIRE) == [RELEASE_REQUEST]


def test_every_special_byte_is_escaped() -> None:
    assert escape(b"\xc0\xc1\x7d\x00") == b"\x7d\xe0\x7d\xe1\x7d\x5d\x00"
    wire = encode_frame(b"\xc0\xc1\x7d")
    inner = wire[1:-1]
    assert b"\x7d\xe0\x7d\xe1\x7d\x5d" in inner
    assert not {0xC0, 0xC1} & set(inner)


def test_header_and_fcs_are_escaped_too() -> None:
    # 125 bytes of user data: the length's low byte is 7D
    wire = encode_frame(bytes(125))
    assert wire[:6] == b"\xc0\x11\x01\x00\x7d\x5d"
    # some user data whose FCS holds a special byte: it is escaped, and decodes
    found = 0
    for n in range(2000):
        data = n.to_bytes(2, "big")
        fcs = fcs16(b"\x11\x01\x00\x02" + data).to_bytes(2, "little")
        if {0xC0, 0xC1, 0x7D} & set(fcs):
            wire = encode_frame(data)
            assert not {0xC0, 0xC1} & set(wire[1:-1])
            assert FrameDecoder().feed(wire) == [data]
            found += 1
    assert found > 10


def _unescaped_header_and_fcs(data: bytes) -> bytes:
    """A frame as VSCaptureMP writes it: only the user data escaped (docs/intellivue.md §1.3)."""
    header = b"\x11\x01" + len(data).to_bytes(2, "big")
    fcs = fcs16(header + data).to_bytes(2, "little")
    return b"\xc0" + header + escape(data) + fcs + b"\xc1"


def test_a_peer_that_leaves_header_and_fcs_unescaped_is_understood() -> None:
    stats = DriverStats()
    decoder = FrameDecoder(stats)
    # a 7D in the length, a C1 in the length, a 7D in the FCS
    cases = [bytes(125), bytes(193)]
    for n in range(5000):
        data = n.to_bytes(2, "big")
        if 0x7D in fcs16(b"\x11\x01\x00\x02" + data).to_bytes(2, "little"):
            cases.append(data)
            break
    assert len(cases) == 3
    for data in cases:
        assert decoder.feed(_unescaped_header_and_fcs(data)) == [data]
    assert not stats.dropped


def test_damage_is_named() -> None:
    def frame(body: bytes) -> bytes:
        fcs = fcs16(body).to_bytes(2, "little")
        return b"\xc0" + escape(body + fcs) + b"\xc1"

    stats = DriverStats()
    decoder = FrameDecoder(stats)
    good = encode_frame(b"\xe1\x00\x00\x02")
    bad_fcs = good[:6] + bytes((good[6] ^ 1,)) + good[7:]
    assert decoder.feed(bad_fcs) == []
    assert decoder.feed(b"\xc0\x11\x7d\x00\x00\x01\xaa\x00\x00\xc1") == []
    assert decoder.feed(frame(b"\x12\x01\x00\x01\xaa")) == []
    assert decoder.feed(frame(b"\x11\x01\x00\x05\xaa")) == []
    assert decoder.feed(b"\xc0\x11\x01\xc1") == []
    assert stats.dropped == {
        DropReason.BAD_FCS: 1,
        DropReason.BAD_ESCAPE: 1,
        DropReason.BAD_HEADER: 2,
        DropReason.LENGTH_MISMATCH: 1,
    }


def test_garbage_between_frames_resyncs_and_is_counted() -> None:
    stats = DriverStats()
    decoder = FrameDecoder(stats)
    a, b, c = (poll_request(i, i) for i in range(3))
    stream = (
        b"\x01\x02\x03"  # noise
        + encode_frame(a)
        + b"\xc0\x11\x01\x00"  # a frame cut short by the next BOF
        + encode_frame(b)
        + b"\xc1junk"  # noise again
        + encode_frame(c)
    )
    assert decoder.feed(stream) == [a, b, c]
    assert stats.dropped == {DropReason.NOISE: 2, DropReason.TRUNCATED: 1}
    assert stats.frames == 0  # frames are counted by the link, per message


def test_noise_holding_a_stray_bof_is_noise_not_a_truncated_frame() -> None:
    # line noise with a C0 in it: what follows that C0 is no frame header, so nothing was cut
    stats = DriverStats()
    decoder = FrameDecoder(stats)
    a, b = poll_request(1, 1), poll_request(2, 2)
    stream = encode_frame(a) + b"\x07\xc0\x55\xaa" + encode_frame(b) + b"\xc0\x99" + encode_frame(a)
    assert decoder.feed(stream) == [a, b, a]
    # one run of noise before b (the stray BOF inside it does not make it two), one before a
    assert stats.dropped == {DropReason.NOISE: 2}


def test_an_endless_frame_is_dropped_once_and_the_next_decodes() -> None:
    stats = DriverStats()
    decoder = FrameDecoder(stats)
    assert decoder.feed(b"\xc0" + b"\x11" * 5000) == []
    assert decoder.feed(b"\x22" * 3000 + b"\xc1") == []
    data = poll_request(7, 7)
    assert decoder.feed(encode_frame(data)) == [data]
    assert stats.dropped == {DropReason.TOO_LONG: 1}


@given(st.binary(max_size=1500))
def test_frame_round_trip(data: bytes) -> None:
    wire = encode_frame(data)
    assert wire[0] == 0xC0
    assert wire[-1] == 0xC1
    assert not {0xC0, 0xC1} & set(wire[1:-1])
    assert FrameDecoder().feed(wire) == [data]


@given(st.lists(st.binary(max_size=300), max_size=20))
def test_arbitrary_bytes_never_raise_and_a_good_frame_follows(chunks: list[bytes]) -> None:
    stats = DriverStats()
    decoder = FrameDecoder(stats)
    for chunk in chunks:
        decoder.feed(chunk)
    data = poll_request(1, 2)
    assert decoder.feed(encode_frame(data))[-1:] == [data]


@given(st.lists(st.integers(1, 40), min_size=1, max_size=30))
def test_any_split_gives_the_same_frames(cuts: list[int]) -> None:
    messages = [AARQ, RELEASE_REQUEST, POLL_RESULT, bytes(125), ABORT]
    stream = b"".join(encode_frame(m) for m in messages) * 2
    decoder = FrameDecoder()
    got = [m for piece in pieces(stream, cuts * 40) for m in decoder.feed(piece)]
    assert got == messages * 2


# ------------------------------------------------------------------ FLOAT, state


def test_float_values_as_documented() -> None:
    assert decode_float(0x00000048) == (72.0, None)
    assert decode_float(0x00000062) == (98.0, None)
    assert decode_float(0xFF00016D) == (36.5, None)
    assert decode_float(0x00FFFFFF) == (-1.0, None)
    assert decode_float(0xFF0003CD) == (97.3, None)
    assert decode_float(0x02000003) == (300.0, None)
    assert encode_float(72.0) == 0x00000048
    assert encode_float(36.5) == 0xFF00016D
    assert encode_float(-1.0) == 0x00FFFFFF


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (0x007FFFFF, "not_a_number"),
        (0xFF7FFFFF, "not_a_number"),
        (0x00800000, "not_at_resolution"),
        (0x007FFFFE, "positive_infinity"),
        (0x00800002, "negative_infinity"),
    ],
)
def test_float_special_values(raw: int, reason: str) -> None:
    value, why = decode_float(raw)
    assert math.isnan(value)
    assert why == reason


@given(
    st.one_of(
        st.integers(-8_000_000, 8_000_000).map(float),
        st.integers(-800_000, 800_000).map(lambda m: m / 10),
        st.integers(-80_000, 80_000).map(lambda m: m / 100),
    )
)
def test_float_round_trip(value: float) -> None:
    assert decode_float(encode_float(value)) == (value, None)


# ------------------------------------------------------------------ messages


def test_association_request_is_vscapturemps_byte_for_byte() -> None:
    assert association_request() == AARQ
    assert encode_frame(AARQ)[-3:] == b"\xf6\xfe\xc1"  # docs/intellivue.md §2.1: FCS F6 FE
    request = parse_message(AARQ)
    assert isinstance(request, SessionMessage)
    assert request.kind is Session.CONNECT


def test_association_response_matches_the_documented_example() -> None:
    granted = UserInfo(
        system_type=0x00800000,
        startup_mode=0x40000000,
        max_mtu_rx=1000,
        max_mtu_tx=1000,
        poll_ext_options=0x88000000,
        object_support=(),
    )
    assert association_response(granted) == AARE


def test_mds_create_event_and_its_result() -> None:
    built = mds_create_event(
        invoke_id=1, event_time=0x00123456, abs_time=STAMP, rel_time=0x00123456
    )
    assert built == MDS_EVENT
    event = parse_message(MDS_EVENT)
    assert isinstance(event, EventReport)
    assert (event.invoke_id, event.confirmed, event.event_type) == (1, True, 0x0D06)
    assert event.managed_object == (0x21, 0, 0)
    at_zero = EventReport(1, True, (0x21, 0, 0), 0, 0x0D06, b"")
    assert encode_frame(event_report_result(at_zero)) == MDS_RESULT_WIRE


def test_poll_request_parses() -> None:
    assert parse_message(poll_request(5, 9)) == PollRequest(5, 9, NUMERICS, 0)


def test_documented_poll_result_decodes_to_samples() -> None:
    result = parse_message(POLL_RESULT)
    assert isinstance(result, PollResult)
    assert (result.invoke_id, result.poll_number, result.rel_time) == (0, 1, 0x00125396)
    assert (result.polled_type, result.attr_group) == (NUMERICS, 0x0803)
    samples = poll_samples(result, t=50.0, device_id="iv", stats=DriverStats(), cuff=CuffMemory())
    assert [(s.param, s.value, s.valid) for s in samples] == [
        (Param.HR, 72.0, True),
        (Param.SPO2, 98.0, True),
        (Param.PR, 72.0, True),
        (Param.NIBP_SYS, 120.0, True),
        (Param.NIBP_DIA, 80.0, True),
        (Param.NIBP_MEAN, 93.0, True),
    ]
    hr = samples[0]
    assert (hr.t, hr.unit, hr.mdc, hr.device_id) == (50.0, "/min", 147842, "iv")
    assert samples[3].unit == "mm[Hg]"


def test_poll_result_packed_by_hand_from_the_guide_layout() -> None:
    """Independent of the encoder: every field and length from guide "Poll Data Result"."""
    hr = struct.pack(">HHHI", 0x4182, 0x0000, 0x0AA0, 0x0000004B)  # HR 75
    obs1 = struct.pack(">H HH HH", 0x0010, 1, 14, 0x0950, 10) + hr  # 20 bytes
    nbp = b"".join(
        struct.pack(">HHHI", pid, 0, 0x0F20, v)
        for pid, v in ((0x4A05, 0x8C), (0x4A06, 0x5A), (0x4A07, 0xFF0003F4))  # 140/90/101.2
    )
    obs2 = (
        struct.pack(">H HH", 0x0013, 2, 50)
        + struct.pack(">HH HH", 0x094B, 34, 3, 30)
        + nbp
        + struct.pack(">HH", 0x0990, 8)
        + STAMP
    )  # 56 bytes
    message = (
        struct.pack(">HH", 0xE100, 2)  # SPpdu
        + struct.pack(">HH", 2, 122)  # ROapdus: RORS, length
        + struct.pack(">HHH", 0x0033, 7, 116)  # RORSapdu: invoke, CMD_CONFIRMED_ACTION
        + struct.pack(">HHH HH", 0x21, 0, 0, 0x0C16, 106)  # ActionResult
        + struct.pack(">H I", 0x0044, 0x00000100)  # poll_number, rel_time_stamp
        + STAMP  # abs_time_stamp
        + struct.pack(">HH H", 1, 6, 0)  # polled_obj_type, polled_attr_grp
        + struct.pack(">HH", 1, 82)  # PollInfoList
        + struct.pack(">HHH", 0, 2, 76)  # SingleContextPoll
        + obs1
        + obs2
    )
    assert len(message) == 130
    result = parse_message(message)
    assert isinstance(result, PollResult)
    assert (result.invoke_id, result.poll_number, result.abs_time) == (0x33, 0x44, STAMP)
    samples = poll_samples(result, t=1.0, device_id="iv", stats=DriverStats(), cuff=CuffMemory())
    assert [(s.param, s.value) for s in samples] == [
        (Param.HR, 75.0),
        (Param.NIBP_SYS, 140.0),
        (Param.NIBP_DIA, 90.0),
        (Param.NIBP_MEAN, 101.2),
    ]
    # and the encoder writes exactly these bytes
    assert poll_result(result) == message


def test_a_length_that_does_not_add_up_is_malformed() -> None:
    link = _polling_link()
    bad = POLL_RESULT[:7] + bytes((POLL_RESULT[7] + 1,)) + POLL_RESULT[8:]
    got = link.receive(encode_frame(bad), 1.0)
    assert got.samples == ()
    assert link.stats.dropped == {MessageDrop.MALFORMED: 1}


numeric = st.builds(
    NuObservation,
    physio_id=st.sampled_from([0x4182, 0x4BB8, 0x4822, 0x4A15, 0x4A16, 0x4A17, 0x0101]),
    state=st.integers(0, 0xFFFF),
    unit_code=st.sampled_from([0x0AA0, 0x0220, 0x0F20]),
    value=st.integers(0, 0xFFFFFFFF),
)
observation = st.builds(
    lambda handle, values, stamped: Observation.numeric(
        handle, values, stamp=STAMP if stamped else None
    ),
    st.integers(0, 0xFFFF),
    st.lists(numeric, min_size=1, max_size=4),
    st.booleans(),
)


@given(
    st.lists(observation, max_size=40),
    st.integers(0, 0xFFFF),
    st.integers(80, 1000),
    st.sampled_from([None, 0, 7, 0xFFFF]),
)
def test_poll_result_round_trip_whole_and_linked(
    observations: list[Observation], invoke_id: int, mtu: int, sequence_no: int | None
) -> None:
    # sequence_no None: a single poll's result; else an extended one's, with that number
    result = PollResult(
        invoke_id=invoke_id,
        poll_number=invoke_id ^ 0x5555,
        rel_time=123456,
        abs_time=STAMP,
        polled_type=NUMERICS,
        attr_group=0,
        contexts=(ContextPoll(0, tuple(observations)),),
        extended=sequence_no is not None,
        sequence_no=sequence_no or 0,
    )
    assert parse_message(poll_result(result)) == result
    parts = [parse_message(m) for m in poll_results(result, mtu=mtu)]
    assert all(isinstance(p, PollResult) for p in parts)
    got = [o for p in parts if isinstance(p, PollResult) for o in p.observations]
    assert got == observations
    if len(parts) > 1:
        linked = [p.linked for p in parts if isinstance(p, PollResult)]
        assert linked[0] == Linked(1, 1)
        assert linked[-2] == Linked(3, len(parts) - 1)
        assert linked[-1] is None  # the closing RORS


# ------------------------------------------------------------------ samples


def _result(*observations: Observation) -> PollResult:
    return PollResult(0, 1, 0, STAMP, NUMERICS, 0, (ContextPoll(0, observations),))


def _hr(state: int = 0, value: int = 0x48, unit: int = 0x0AA0) -> Observation:
    return Observation.numeric(0x10, [NuObservation(0x4182, state, unit, value)])


def _nbp(sys_: int, dia: int, mean: int, stamp: bytes | None) -> Observation:
    values = [
        NuObservation(0x4A05, 0, 0x0F20, sys_),
        NuObservation(0x4A06, 0, 0x0F20, dia),
        NuObservation(0x4A07, 0, 0x0F20, mean),
    ]
    return Observation.numeric(0x13, values, stamp=stamp)


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        (0x8000, "invalid"),
        (0x4000, "questionable"),
        (0x2000, "unavailable"),
        (0x1000, "calibration"),
        (0x0800, "test_data"),
        (0x0400, "demo_data"),
        (0xA000, "invalid"),
        (0x0100, "state_0x0100"),
    ],
)
def test_unusable_states_give_invalid_samples_naming_the_state(state: int, reason: str) -> None:
    (sample,) = poll_samples(
        _result(_hr(state)), t=0.0, device_id="iv", stats=DriverStats(), cuff=CuffMemory()
    )
    assert (sample.value, sample.valid, sample.reason) == (72.0, False, reason)


def test_low_octet_states_are_usable() -> None:
    # MSMT_ONGOING, EARLY_INDICATION, VALIDATED, in alarm: the value stands
    (sample,) = poll_samples(
        _result(_hr(0x00E2)), t=0.0, device_id="iv", stats=DriverStats(), cuff=CuffMemory()
    )
    assert (sample.valid, sample.reason) == (True, None)


def test_special_float_gives_invalid_sample_with_reason() -> None:
    (sample,) = poll_samples(
        _result(_hr(value=0x007FFFFF)),
        t=0.0,
        device_id="iv",
        stats=DriverStats(),
        cuff=CuffMemory(),
    )
    assert math.isnan(sample.value)
    assert (sample.valid, sample.reason) == (False, "not_a_number")


def test_wrong_unit_and_unmapped_numerics_are_counted() -> None:
    stats = DriverStats()
    unmapped = Observation.numeric(0x20, [NuObservation(0x4BB0, 0, 0x0220, 5)])
    samples = poll_samples(
        _result(_hr(unit=0x0220), unmapped), t=0.0, device_id="iv", stats=stats, cuff=CuffMemory()
    )
    assert samples == []
    assert stats.dropped == {"wrong_unit": 1, "unmapped_numeric": 1}


def test_nibp_is_emitted_once_per_determination() -> None:
    cuff = CuffMemory()

    def nibp(*observations: Observation) -> list[tuple[Param, float]]:
        got = poll_samples(
            _result(*observations), t=0.0, device_id="iv", stats=DriverStats(), cuff=cuff
        )
        return [(s.param, s.value) for s in got if s.param.name.startswith("NIBP")]

    first = [(Param.NIBP_SYS, 120.0), (Param.NIBP_DIA, 80.0), (Param.NIBP_MEAN, 93.0)]
    assert nibp(_hr(), _nbp(120, 80, 93, STAMP)) == first
    assert nibp(_hr(), _nbp(120, 80, 93, STAMP)) == []
    later = hexb("20 24 05 17 10 35 00 00")
    # the same values at a new time: a new determination
    assert nibp(_nbp(120, 80, 93, later)) == first
    # without time stamps, a change of values is a new determination
    assert nibp(_nbp(121, 80, 93, None)) == [
        (p, 121.0 if i == 0 else v) for i, (p, v) in enumerate(first)
    ]
    assert nibp(_nbp(121, 80, 93, None)) == []


# ------------------------------------------------------------------ the session


def _pump(link: IntelliVueLink, side: IntelliVueSide, data: bytes, now: float) -> list[Sample]:
    """Carry bytes between host and monitor until neither has anything to say."""
    samples: list[Sample] = []
    while data:
        answer = b"".join(side.receive(data, now))
        got = link.receive(answer, now)
        samples += got.samples
        data = got.reply
    return samples


def _scenario_second(side: IntelliVueSide, t: float, hr: float, nibp: bool = False) -> None:
    samples = [
        Sample(t, Param.HR, hr, valid=True, device_id="x"),
        Sample(t, Param.PR, hr - 1, valid=True, device_id="x"),
        Sample(t, Param.SPO2, 97.0, valid=True, device_id="x"),
    ]
    if nibp:
        samples += [
            Sample(t, Param.NIBP_SYS, 150.0, valid=True, device_id="x"),
            Sample(t, Param.NIBP_DIA, 95.0, valid=True, device_id="x"),
            Sample(t, Param.NIBP_MEAN, 113.0, valid=True, device_id="x"),
        ]
    assert side.second(samples, t) == []


def _polling_link(
    side: IntelliVueSide | None = None, poll: PollMode = PollMode.SINGLE
) -> IntelliVueLink:
    link = IntelliVueLink("iv", DriverStats(), poll=poll)
    side = side or IntelliVueSide()
    assert _pump(link, side, link.start(0.0), 0.0) == []
    assert link.polling
    return link


def _values(samples: list[Sample]) -> list[tuple[Param, float, float]]:
    return [(s.param, s.value, s.t) for s in samples]


@pytest.mark.parametrize("mtu", [1000, 60])
def test_association_and_polling_between_link_and_simulator(mtu: int) -> None:
    side = IntelliVueSide(mtu=mtu)
    _scenario_second(side, 0.0, 70.0)
    link = _polling_link(side, PollMode.SINGLE)
    assert link.stats.frames == 2  # association response, MDS Create Event
    assert side.associated
    poll = link.timer(1.0)
    assert _values(_pump(link, side, poll, 1.0)) == [
        (Param.HR, 70.0, 1.0),
        (Param.SPO2, 97.0, 1.0),
        (Param.PR, 69.0, 1.0),
    ]
    _scenario_second(side, 2.0, 71.0, nibp=True)
    assert _values(_pump(link, side, link.timer(2.0), 2.0)) == [
        (Param.HR, 71.0, 2.0),
        (Param.SPO2, 97.0, 2.0),
        (Param.PR, 70.0, 2.0),
        (Param.NIBP_SYS, 150.0, 2.0),
        (Param.NIBP_DIA, 95.0, 2.0),
        (Param.NIBP_MEAN, 113.0, 2.0),
    ]
    # the same determination on show: not again
    assert [s.param for s in _pump(link, side, link.timer(3.0), 3.0)] == [
        Param.HR,
        Param.SPO2,
        Param.PR,
    ]
    assert not link.stats.dropped


def test_a_reconnect_does_not_repeat_the_determination() -> None:
    side = IntelliVueSide()
    _scenario_second(side, 0.0, 70.0, nibp=True)
    cuff = CuffMemory()
    for _ in range(2):
        link = IntelliVueLink("iv", DriverStats(), cuff, poll=PollMode.SINGLE)
        _pump(link, side, link.start(1.0), 1.0)
        params = [s.param for s in _pump(link, side, link.timer(2.0), 2.0)]
    assert params == [Param.HR, Param.SPO2, Param.PR]


def test_association_request_is_repeated_until_answered() -> None:
    link = IntelliVueLink("iv", DriverStats())
    request = link.start(0.0)
    assert [link.timer(t) for t in (1.0, 2.0, 3.0, 4.0)] == [b""] * 4
    assert link.timer(5.0) == request
    assert link.timer(6.0) == b""


def test_release_by_the_monitor_is_answered_then_ends_the_session() -> None:
    link = _polling_link()
    got = link.receive(encode_frame(RELEASE_REQUEST), 5.0)
    assert got.reply == encode_frame(RELEASE_RESPONSE)
    with pytest.raises(ProtocolError, match="released"):
        link.timer(6.0)


@pytest.mark.parametrize(
    ("message", "match"),
    [(ABORT, "aborted"), (bytes.fromhex("0C 03 32 01 00"), "refused")],
)
def test_abort_and_refusal_end_the_session(message: bytes, match: str) -> None:
    link = IntelliVueLink("iv", DriverStats())
    link.start(0.0)
    with pytest.raises(ProtocolError, match=match):
        link.receive(encode_frame(message), 1.0)


def test_polls_answered_only_by_errors_for_ten_seconds_end_the_session() -> None:
    link = _polling_link()
    for t in range(1, 10):
        assert link.timer(float(t))
        # ROER NO_SUCH_OBJECT_INSTANCE to the poll, written from the guide's ROERapdu
        roer = struct.pack(">HH HH HHH", 0xE100, 2, 3, 6, t, 1, 0)
        assert link.receive(encode_frame(roer), float(t)).samples == ()
    with pytest.raises(ProtocolError, match="association lost"):
        link.timer(10.0)


def test_a_silent_monitor_is_left_to_the_drivers_quiet_time() -> None:
    link = _polling_link()
    for t in range(1, 30):
        assert link.timer(float(t))


def test_release_by_the_host_is_answered_by_the_simulator() -> None:
    side = IntelliVueSide()
    link = _polling_link(side)
    assert link.polling
    assert side.receive(encode_frame(RELEASE_REQUEST), 1.0) == [encode_frame(RELEASE_RESPONSE)]
    assert not side.associated


def test_the_simulator_aborts_when_the_client_falls_silent() -> None:
    side = IntelliVueSide()
    _polling_link(side)
    assert side.second([], 9.0) == []
    assert side.second([], 10.0) == [encode_frame(ABORT)]
    assert not side.associated
    assert side.receive(encode_frame(poll_request(1, 1)), 11.0) == []


def test_garbage_on_the_link_never_raises() -> None:
    link = _polling_link()
    got = link.receive(b"\xc0\x11\x01\x00\x02\xe1\x00\xaa\xbb\xc1\x00\xff", 1.0)
    assert got == type(got)()
    assert sum(link.stats.dropped.values()) >= 1


def test_corrupt_is_caught_by_the_fcs() -> None:
    side = IntelliVueSide()
    rng = random.Random(4)  # noqa: S311 - simulated line hits, not secrets
    stats = DriverStats()
    decoder = FrameDecoder(stats)
    for _ in range(200):
        frame = encode_frame(POLL_RESULT)
        assert decoder.feed(side.corrupt(frame, rng)) == []
    assert stats.dropped == {DropReason.BAD_FCS: 200}


def test_decode_capture_uses_the_results_time_stamps() -> None:
    capture = b"\x00" + encode_frame(AARE) + encode_frame(POLL_RESULT) + encode_frame(MDS_EVENT)
    samples, stats = decode_capture(capture, device_id="bed3")
    t = dt.datetime(2024, 5, 17, 10, 30, 1).astimezone().timestamp()
    assert [(s.param, s.t, s.device_id) for s in samples][:2] == [
        (Param.HR, t, "bed3"),
        (Param.SPO2, t, "bed3"),
    ]
    assert (stats.frames, stats.samples, dict(stats.dropped)) == (3, 6, {"noise": 1})


@given(st.binary(max_size=400), st.sampled_from([b"", b"\xe1\x00\x00\x02"]))
def test_any_well_framed_user_data_is_counted_never_raised(data: bytes, head: bytes) -> None:
    link = _polling_link()
    frames = link.stats.frames
    try:
        link.receive(encode_frame(head + data), 1.0)
    except ProtocolError:
        assert (head + data)[0] in {0x0A, 0x0C, 0x19}  # abort, refusal, release response
        return
    counted = link.stats.frames - frames + sum(link.stats.dropped.values())
    assert counted >= 1


# ------------------------------------------------------------------ the extended poll

# VSCaptureMP's ext_poll_request_msg5 (docs/intellivue.md §5.2), field by field
EXT_POLL = hexb(
    "E1 00 00 02"  # SPpdu: session 0xE100, presentation context 2
    " 00 01 00 28"  # ROapdus: ROIV, 40 bytes
    " 00 01 00 07 00 22"  # ROIVapdu: invoke 1, CMD_CONFIRMED_ACTION, 34 bytes
    " 00 21 00 00 00 00  00 00 00 00"  # ActionArgument: the MDS {0x21, 0, 0}, scope 0
    " F1 3B 00 14"  # NOM_ACT_POLL_MDIB_DATA_EXT, 20 bytes
    " 00 01  00 01 00 06  00 00"  # poll number 1, {NOM_PART_OBJ, NOM_MOC_VMO_METRIC_NU}, group 0
    " 00 01 00 08  F1 3E 00 04 00 03 A9 80"  # NOM_ATTR_TIME_PD_POLL = 240000 (30 s)
)


def _ext_result(ro_type: int, linked: bytes, sequence_no: int, rel_time: int) -> bytes:
    """An extended poll result packed by hand from the guide's layout (docs/intellivue.md §6.4).

    HR 72 /min (an observation that carries a label first, skipped) and an SpO2 of 98 %; the
    abs_time_stamp all FF. 104 bytes as a RORS (the lengths are written out, not computed).
    """
    hr = struct.pack(">H HH HHI HH HHHI", 0x10, 2, 22, 0x0924, 4, 0x00024182, 0x0950, 10,
                     0x4182, 0, 0x0AA0, 72)  # fmt: skip
    spo2 = struct.pack(">H HH HH HHHI", 0x11, 1, 14, 0x0950, 10, 0x4BB8, 0, 0x0220, 98)
    assert (len(hr), len(spo2)) == (28, 20)
    context = struct.pack(">HHH", 0, 2, 48) + hr + spo2
    info = struct.pack(">HH", 1, 54) + context
    no_time = b"\xff" * 8
    reply = struct.pack(">HHI", 1, sequence_no, rel_time) + no_time + struct.pack(">HHH", 1, 6, 0)
    action = struct.pack(">HHH HH", 0x21, 0, 0, 0xF13B, 80) + reply + info
    ro = linked + struct.pack(">HHH", 1, 7, 90) + action
    return struct.pack(">HH HH", 0xE100, 2, ro_type, len(ro)) + ro


# 5 s after the MDS_EVENT's relative time 0x123456 (its absolute time 2024-05-17 10:30:00)
EXT_RORS = _ext_result(2, b"", 0, 0x123456 + 5 * 8000)
EXT_ROLRS = _ext_result(5, b"\x01\x01", 3, 0x123456 + 6 * 8000)


def test_extended_poll_request_is_vscapturemps_byte_for_byte() -> None:
    assert extended_poll_request(1, 1, period=240000) == EXT_POLL
    assert parse_message(EXT_POLL) == PollRequest(1, 1, NUMERICS, 0, extended=True, period=240000)


@pytest.mark.parametrize(
    ("data", "linked", "sequence_no"),
    [(EXT_RORS, None, 0), (EXT_ROLRS, Linked(1, 1), 3)],
    ids=["unlinked", "linked"],
)
def test_extended_poll_results_decode_linked_and_unlinked(
    data: bytes, linked: Linked | None, sequence_no: int
) -> None:
    assert (len(EXT_RORS), len(EXT_ROLRS)) == (104, 106)
    message = parse_message(data)
    assert isinstance(message, PollResult)
    assert (message.extended, message.linked, message.sequence_no) == (True, linked, sequence_no)
    assert message.abs_time == b"\xff" * 8
    link = _polling_link()
    samples = link.receive(encode_frame(data), 7.0).samples
    assert [(s.param, s.value, s.t, s.valid) for s in samples] == [
        (Param.HR, 72.0, 7.0, True),
        (Param.SPO2, 98.0, 7.0, True),
    ]
    assert not link.stats.dropped


def _rors(command_type: int, command: bytes) -> bytes:
    ro = struct.pack(">HHH", 9, command_type, len(command)) + command
    return struct.pack(">HHHH", 0xE100, 2, 2, len(ro)) + ro


# What a real monitor also sends a client that polls more than numerics, packed by hand:
# a wave poll result (NOM_MOC_VMO_METRIC_SA_RT 0x0009: one SA observation, 0x096E), the
# result of an action the driver does not know (0x0C17), a GET result (command type 3), an
# ROER (NO_SUCH_ACTION 9) and an event report that is not the MDS Create Event (0x0D17).
WAVE_RESULT = _rors(
    7,
    struct.pack(">HHH HH", 0x21, 0, 0, 0x0C16, 44)
    + struct.pack(">HI", 2, 0) + b"\xff" * 8 + struct.pack(">HHH", 1, 9, 0)
    + struct.pack(">HH HHH", 1, 20, 0, 1, 14)
    + struct.pack(">H HH HH HH", 0x30, 1, 8, 0x096E, 4, 0x0101, 0x0002),
)  # fmt: skip
OTHER_ACTION = _rors(7, struct.pack(">HHH HH", 0x21, 0, 0, 0x0C17, 0))
GET_RESULT = _rors(3, struct.pack(">HHH HH", 0x21, 0, 0, 0, 0))
ROER = struct.pack(">HH HH HHH", 0xE100, 2, 3, 6, 9, 9, 0)
OTHER_EVENT = struct.pack(">HH HH HHH HHH I HH", 0xE100, 2, 1, 20, 4, 0, 14,
                          0x21, 0, 0, 0, 0x0D17, 0)  # fmt: skip
UNUSED = (WAVE_RESULT, OTHER_ACTION, GET_RESULT, ROER, OTHER_EVENT)


def test_every_message_not_used_is_counted_by_what_it_is() -> None:
    link = _polling_link()
    for data in UNUSED:
        assert link.receive(encode_frame(data), 3.0) == type(link.receive(b"", 3.0))()
    assert dict(link.stats.dropped) == {
        "unknown_object_class 0x0009": 1,
        "unsupported_action 0x0C17": 1,
        "unsupported_command 0x0003": 1,
        "remote_error 0x0009": 1,
        "unsupported_event 0x0D17": 1,
    }
    assert link.stats.frames == 2 + len(UNUSED)


def test_codes_named_per_reason_are_bounded() -> None:
    stats = DriverStats()
    for code in range(20):
        count_unused(stats, MessageDrop.UNSUPPORTED_ACTION, code)
    count_unused(stats, MessageDrop.UNSUPPORTED_ACTION, 3)
    assert len(stats.dropped) == 17
    assert stats.dropped["unsupported_action 0x0003"] == 2
    assert stats.dropped["unsupported_action other"] == 4


def test_a_capture_of_extended_polls_is_stamped_from_the_mds_times() -> None:
    capture = b"".join(encode_frame(m) for m in (AARE, MDS_EVENT, EXT_ROLRS, *UNUSED, EXT_RORS))
    samples, stats = decode_capture(capture, device_id="bed3")
    at = dt.datetime(2024, 5, 17, 10, 30).astimezone().timestamp()
    assert [(s.param, s.value, s.t) for s in samples] == [
        (Param.HR, 72.0, at + 6),
        (Param.SPO2, 98.0, at + 6),
        (Param.HR, 72.0, at + 5),
        (Param.SPO2, 98.0, at + 5),
    ]
    assert stats.frames == 9
    assert sum(stats.dropped.values()) == 5


def test_extended_results_without_any_time_are_counted() -> None:
    samples, stats = decode_capture(encode_frame(EXT_RORS), device_id="bed3")
    assert samples == []
    assert dict(stats.dropped) == {"no_time": 1}


def test_extended_polling_between_link_and_simulator() -> None:
    side = IntelliVueSide(mtu=60)  # every result in linked parts
    _scenario_second(side, 0.0, 70.0)
    link = _polling_link(side, PollMode.EXTENDED)
    request = link.timer(1.0)
    assert parse_message(FrameDecoder().feed(request)[0]).extended  # type: ignore[union-attr]
    got = [(s.param, s.value) for s in _pump(link, side, request, 1.0)]
    assert got == [(Param.HR, 70.0), (Param.SPO2, 97.0), (Param.PR, 69.0)]
    hr: list[float] = []
    for t in range(2, 40):
        now = float(t)
        samples = [Sample(now, Param.HR, 60.0 + t, valid=True, device_id="x")]
        hr += [s.value for s in _pump(link, side, link.timer(now), now) if s.param is Param.HR]
        for frame in side.second(samples, now):
            got_now = link.receive(frame, now)
            hr += [s.value for s in got_now.samples if s.param is Param.HR]
    # one value a second: renewed every 5 s, the period never runs out and nothing is doubled
    assert hr == [60.0 + t for t in range(2, 40)]
    assert not link.stats.dropped
    assert link.mode is PollMode.EXTENDED


def test_a_monitor_without_the_extended_poll_gets_the_single_poll() -> None:
    side = IntelliVueSide(extended=False)
    _scenario_second(side, 0.0, 70.0)
    link = _polling_link(side, PollMode.EXTENDED)
    assert _pump(link, side, link.timer(1.0), 1.0) == []  # answered by an ROER
    assert link.mode is PollMode.SINGLE
    assert [s.param for s in _pump(link, side, link.timer(2.0), 2.0)] == [
        Param.HR, Param.SPO2, Param.PR,
    ]  # fmt: skip
    assert dict(link.stats.dropped) == {"remote_error 0x0009": 1}


def test_the_mds_create_event_starts_polling_without_a_readable_response() -> None:
    link = IntelliVueLink("iv", DriverStats())
    link.start(0.0)
    got = link.receive(encode_frame(MDS_EVENT), 0.5)
    assert link.polling
    (reply,) = FrameDecoder().feed(got.reply)
    # the result names the event's invoke id, object, time and type (docs/intellivue.md §3)
    assert reply == hexb(
        "E1 00 00 02 00 02 00 14 00 01 00 01 00 0E 00 21 00 00 00 00 00 12 34 56 0D 06 00 00"
    )
    # an unconfirmed one (CMD_EVENT_REPORT) is not answered
    unconfirmed = MDS_EVENT[:10] + b"\x00\x00" + MDS_EVENT[12:]
    assert link.receive(encode_frame(unconfirmed), 1.0).reply == b""
