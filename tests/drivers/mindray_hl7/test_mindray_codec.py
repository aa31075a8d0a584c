"""Mindray HL7 codec and driver: messages by hand from the dialect (docs/devices.md §3.1), ACKs."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path

import hl7
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter

from drivers.base import DeviceError, Driver, DriverStats
from drivers.mindray_hl7.codec import MindrayLink, MindrayStream, decode_capture, encode_group
from drivers.registry import DriverSettings, create_driver
from kernel.clock import ManualClock
from kernel.mllp import frame
from kernel.settings import BrokerSettings, TimeoutSettings
from kernel.vocabulary import Param, Sample
from tests.helpers import ListSink, pieces

FIXTURE = Path(__file__).parents[2] / "data" / "devices" / "mindray_hl7.raw"
SPO2 = (
    "MSH|^~\\&|||||||ORU^R01|204|P|2.3.1|\r"
    "OBX||NM|160^SpO2|2103|97||||||F\rOBX||NM|161^PR|2103|62||||||F\r"
)

ASKING = "MSH|^~\\&|BeneView|ICU|||||ORU^R01|77|P|2.3.1|||AL\rOBX||NM|101^HR|2101|64||||||F\r"


@pytest.fixture
def utc() -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


def summary(samples: list[Sample]) -> list[tuple[float, str, float, bool, str | None]]:
    return [(s.t, s.param.value, s.value, s.valid, s.reason) for s in samples]


def test_the_handwritten_capture(utc: None) -> None:
    samples, stats = decode_capture(FIXTURE.read_bytes(), device_id="bv")
    t = 1259842591.0  # OBR-7 20091203121631, read in the host's zone (UTC here)
    nan = math.nan
    expected = [
        (t, "HR", 60.0, True, None), (t, "RR", 20.0, True, None), (t, "SPO2", 98.0, True, None),
        (t, "ABP_SYS", 120.0, True, None),
        # the periodic groups carry no time: one second a round after the last time seen
        (t + 1, "HR", 61.0, True, None), (t + 1, "SPO2", 97.0, True, None),
        (t + 1, "PR", 62.0, True, None), (t + 1, "ABP_SYS", 118.0, True, None),
        (t + 1, "ABP_MEAN", 90.0, True, None), (t + 1, "ABP_DIA", 75.0, True, None),
        (t + 1, "ETCO2", 38.0, True, None),
        # -100 is the monitor's "no value"
        (t + 2, "HR", nan, False, "no_value"),
        # the state message said 2 (no value): the next value is invalid too, until a 3
        (t + 3, "HR", 59.0, False, "state_2"),
    ]  # fmt: skip
    got = summary(samples)
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g[:2] == e[:2], (g, e)
        assert g[3:] == e[3:], (g, e)
        assert g[2] == e[2] or (math.isnan(g[2]) and math.isnan(e[2]))
    assert stats.frames == 10
    assert not stats.dropped
    assert {s.device_id for s in samples} == {"bv"}


def test_nothing_is_acknowledged_unless_msh15_asks() -> None:
    link = MindrayLink("bv", DriverStats())
    got = link.receive(frame(SPO2), 1.0)
    assert [(s.param, s.value, s.t) for s in got.samples] == [
        (Param.SPO2, 97.0, 1.0),
        (Param.PR, 62.0, 1.0),
    ]
    assert got.reply == b""


def test_a_message_that_asks_is_acknowledged_and_the_ack_is_valid_hl7() -> None:
    link = MindrayLink("bv", DriverStats())
    got = link.receive(frame(ASKING), 1767225600.0)
    assert [(s.param, s.value) for s in got.samples] == [(Param.HR, 64.0)]
    assert got.reply.startswith(b"\x0b")
    assert got.reply.endswith(b"\x1c\r")
    ack = hl7.parse(got.reply[1:-2].decode())
    assert str(ack.segment("MSH")[9]) == "ACK^R01"
    assert str(ack.segment("MSH")[5]) == "BeneView"  # back to the sender
    assert str(ack.segment("MSA")[1]) == "AA"
    assert str(ack.segment("MSA")[2]) == "77"  # the message acknowledged


def test_an_unsupported_message_is_counted_and_rejected_when_errors_are_asked_for() -> None:
    stats = DriverStats()
    link = MindrayLink("bv", stats)
    adt = "MSH|^~\\&|||||||ADT^A01|9|P|2.3.1|||ER\rPID|||1\r"
    got = link.receive(frame(adt) + frame(SPO2.replace("|2.3.1|", "|2.3.1|||ER")), 1.0)
    assert got.reply.count(b"MSA|") == 1
    assert b"MSA|AR|9" in got.reply
    assert stats.dropped == {"unsupported_message": 1}
    assert stats.frames == 2
    assert len(got.samples) == 2


def test_a_determination_is_passed_on_once() -> None:
    nibp = [(170, "NIBP S", 120.0), (171, "NIBP D", 80.0), (172, "NIBP M", 93.0)]
    data, states = encode_group(2105, nibp)
    got = MindrayLink("bv", DriverStats()).receive(data + states + data + states, 1.0)
    assert [(s.param, s.value) for s in got.samples] == [
        (Param.NIBP_SYS, 120.0),
        (Param.NIBP_DIA, 80.0),
        (Param.NIBP_MEAN, 93.0),
    ]


def test_damage_is_named() -> None:
    whole = frame(SPO2)
    cases = {
        "not_ascii": frame(SPO2.replace("97", "9\xb7").encode("latin-1")),
        "malformed": frame("MSH|^~\\&|short\r"),
        "truncated": whole[:30],  # the next frame begins before this one's end
        "garbage": b"\x00\x0bnoise\x1c",  # a VT in line noise is no message
        "bad_value": frame(SPO2.replace("|97|", "|ninety|")),
    }
    for reason, bad in cases.items():
        stats = DriverStats()
        got = MindrayLink("bv", stats).receive(bad + whole, 1.0)
        assert stats.dropped == {reason: 1}, (reason, stats.dropped)
        assert [s.value for s in got.samples][-2:] == [97.0, 62.0], reason


def test_a_frame_without_end_is_dropped_once_and_the_stream_recovers() -> None:
    stats = DriverStats()
    stream = MindrayStream("bv", stats)
    stream.feed(b"\x0bMSH|" + b"x" * (1 << 20) + b"|", 1.0)
    stream.feed(b"more of it", 1.0)
    messages, _ = stream.feed(frame(SPO2), 2.0)
    assert stats.dropped == {"too_long": 1}
    assert len(messages) == 1


values = st.one_of(st.none(), st.integers(0, 250).map(float))


@given(hr=values, spo2=values, pr=values)
def test_round_trip(hr: float | None, spo2: float | None, pr: float | None) -> None:
    stats = DriverStats()
    stream = MindrayStream("bv", stats)
    ecg = encode_group(2101, [(101, "HR", hr)])
    pleth = encode_group(2103, [(160, "SpO2", spo2), (161, "PR", pr)])
    messages, _ = stream.feed(b"".join(ecg + pleth), 5.0)
    got = {s.param: s.value for _, samples in messages for s in samples}
    for param, sent in ((Param.HR, hr), (Param.SPO2, spo2), (Param.PR, pr)):
        assert got[param] == sent if sent is not None else math.isnan(got[param])
    assert stats.frames == 4
    assert not stats.dropped


@given(st.lists(st.binary(max_size=300), max_size=12))
def test_arbitrary_bytes_never_raise_and_a_message_after_them_decodes(chunks: list[bytes]) -> None:
    stream = MindrayStream("bv")
    for chunk in chunks:
        stream.feed(chunk, 1.0)
    # an unfinished frame swallows what follows until a new VT: the next whole frame decodes
    messages, _ = stream.feed(b"\x1c\r" + frame(SPO2) + frame(SPO2), 2.0)
    assert messages
    assert [s.value for s in messages[-1][1]] == [97.0, 62.0]


@given(st.lists(st.integers(1, 60), min_size=1, max_size=30))
def test_any_split_gives_the_same_messages(cuts: list[int]) -> None:
    data = FIXTURE.read_bytes()
    stream = MindrayStream("bv")
    count = sum(len(stream.feed(piece, 1.0)[0]) for piece in pieces(data, cuts))
    assert count == 10
    assert not stream.stats.dropped


def make_driver(**fields: object) -> Driver:
    settings = TypeAdapter(DriverSettings).validate_python(
        {"kind": "mindray-hl7", "device_id": "bv", **fields}
    )
    return create_driver(
        settings, broker=BrokerSettings(), timeouts=TimeoutSettings(), clock=ManualClock()
    )


async def test_connecting_to_a_gateway_streams_and_acknowledges_over_tcp() -> None:
    # a gateway that listens (mode = "connect" on Vigil's side): it sends one message asking
    # for an ACK and waits for it
    acks: asyncio.Queue[bytes] = asyncio.Queue()

    async def gateway(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(frame(ASKING))
        await writer.drain()
        await acks.put(await reader.readuntil(b"\x1c\r"))
        writer.close()

    server = await asyncio.start_server(gateway, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    driver = make_driver(mode="connect", host="127.0.0.1", port=port, quiet_s=5.0)
    sink = ListSink()
    up = asyncio.Event()
    task = asyncio.create_task(driver.run(sink, up.set), name="mindray-under-test")
    try:
        async with asyncio.timeout(5):
            ack = await acks.get()
            await up.wait()
        assert b"MSA|AA|77" in ack
        assert [(s.param, s.value) for s in sink.samples] == [(Param.HR, 64.0)]
        # the gateway hung up: the run ends with the supervisor's cue
        with pytest.raises(DeviceError, match="closed"):
            async with asyncio.timeout(5):
                await task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, DeviceError):
            await task
        server.close()
        await server.wait_closed()


async def test_nothing_to_connect_to_is_a_device_error() -> None:
    with contextlib.closing(__import__("socket").socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    driver = make_driver(mode="connect", host="127.0.0.1", port=port)
    with pytest.raises(DeviceError, match="cannot connect"):
        async with asyncio.timeout(5):
            await driver.run(ListSink())
