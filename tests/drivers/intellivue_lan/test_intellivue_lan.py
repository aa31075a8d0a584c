"""IntelliVue over the LAN: pcap reading, capture decoding, and the driver over real UDP.

Captures are packed here by hand with struct from the formats' layouts (tcpdump.org's pcap
and pcapng, RFC 791/768 headers); the messages in them are the hand-packed vectors of the
serial tests. The driver runs against the simulator on real loopback UDP sockets.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter

from drivers.base import DeviceError, Driver, DriverStats
from drivers.intellivue.messages import association_request, connect_indication
from drivers.intellivue_lan.codec import IntelliVueLanLink, decode_capture, is_connect_indication
from drivers.link import ProtocolError
from drivers.pcap import PcapError, PcapStats, udp_datagrams
from drivers.registry import DriverSettings, create_driver
from kernel.clock import SimulatedClock
from kernel.settings import BrokerSettings, TimeoutSettings
from kernel.vocabulary import Param, Step
from simulators.capture import record_frames
from simulators.intellivue import IntelliVueLanSide
from simulators.intellivue_lan import IntelliVueLanMonitor
from simulators.scenarios import build_scenario
from tests.drivers.intellivue.test_intellivue_codec import (
    AARE,
    EXT_ROLRS,
    MDS_EVENT,
    UNUSED,
)
from tests.helpers import ListSink, run_vigil, running_driver

MONITOR = "10.0.0.5"
HOST = "10.0.0.9"


def ipv4_udp(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    """An IPv4 header (20 bytes, no options, checksum left 0) and a UDP header, then payload."""
    udp = struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))  # fmt: skip
    return ip + udp


def ethernet(ip: bytes, ethertype: int = 0x0800) -> bytes:
    return bytes(6) + bytes.fromhex("00 09 FB 00 00 01") + struct.pack(">H", ethertype) + ip


def classic_pcap(packets: list[tuple[float, bytes]], linktype: int = 1) -> bytes:
    """Little-endian, microsecond pcap: the 24-byte file header, then 16-byte record headers."""
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    for t, frame in packets:
        seconds = int(t)
        out += struct.pack("<IIII", seconds, round((t - seconds) * 1e6), len(frame), len(frame))
        out += frame
    return out


def pcapng(packets: list[tuple[float, bytes]]) -> bytes:
    """A Section Header, an Ethernet Interface Description (if_tsresol 9: ns), Enhanced Packets."""

    def block(kind: int, body: bytes) -> bytes:
        body += bytes(-len(body) % 4)
        length = 12 + len(body)
        return struct.pack("<II", kind, length) + body + struct.pack("<I", length)

    out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    tsresol = struct.pack("<HHB3x", 9, 1, 9) + struct.pack("<HH", 0, 0)
    out += block(0x00000001, struct.pack("<HHI", 1, 0, 65535) + tsresol)
    for t, frame in packets:
        ns = round(t * 1e9)
        out += block(6, struct.pack("<IIIII", 0, ns >> 32, ns & 0xFFFFFFFF, len(frame), len(frame))
                     + frame)  # fmt: skip
    return out


T = 1715941800.0  # 2024-05-17 10:30:00 UTC

# a ward's conversation: the indication, the request, the monitor's answers, a TCP packet
CONVERSATION = [
    (T, ethernet(ipv4_udp(MONITOR, 24005, "10.0.0.255", 24005,
                          connect_indication(ip=socket.inet_aton(MONITOR), mac=bytes(6),
                                             event_time=0)))),
    (T + 0.1, ethernet(ipv4_udp(HOST, 50000, MONITOR, 24105, association_request()))),
    (T + 0.2, ethernet(ipv4_udp(MONITOR, 24105, HOST, 50000, AARE))),
    (T + 0.3, ethernet(ipv4_udp(MONITOR, 24105, HOST, 50000, MDS_EVENT))),
    (T + 6.0, ethernet(ipv4_udp(MONITOR, 24105, HOST, 50000, EXT_ROLRS))),
    (T + 6.1, ethernet(ipv4_udp(MONITOR, 24105, HOST, 50000, UNUSED[0]))),
    (T + 6.2, ethernet(bytes.fromhex("45 00 00 14 00 01 00 00 40 06 00 00") + bytes(8))),
]  # fmt: skip


@pytest.mark.parametrize("make", [classic_pcap, pcapng], ids=["pcap", "pcapng"])
def test_udp_datagrams_of_a_capture(make: object) -> None:
    assert callable(make)
    stats = PcapStats()
    got = list(udp_datagrams(make(CONVERSATION), stats))
    assert [(d.src, d.sport, d.dst, d.dport) for d in got[:2]] == [
        (MONITOR, 24005, "10.0.0.255", 24005),
        (HOST, 50000, MONITOR, 24105),
    ]
    assert got[2].payload == AARE
    assert got[0].t == pytest.approx(T)
    assert got[4].t == pytest.approx(T + 6.0)
    assert (stats.packets, dict(stats.skipped)) == (7, {"not_udp": 1})


def test_other_link_layers_and_damage() -> None:
    datagram = ipv4_udp(MONITOR, 24105, HOST, 1, b"xy")
    raw = list(udp_datagrams(classic_pcap([(T, datagram)], linktype=101)))
    assert [d.payload for d in raw] == [b"xy"]
    vlan = ethernet(struct.pack(">HH", 5, 0x0800) + datagram, ethertype=0x8100)
    assert [d.payload for d in udp_datagrams(classic_pcap([(T, vlan)]))] == [b"xy"]
    stats = PcapStats()
    cut = classic_pcap([(T, ethernet(datagram))])[:-1]
    assert list(udp_datagrams(cut, stats)) == []
    assert stats.skipped == {"truncated_record": 1}
    with pytest.raises(PcapError, match="not a pcap"):
        list(udp_datagrams(b"\xc0\x11\x01\x00 this is a serial capture"))


def test_a_lan_capture_decodes_from_the_monitors_datagrams() -> None:
    assert is_connect_indication(CONVERSATION[0][1][42:])
    samples, stats = decode_capture(pcapng(CONVERSATION), device_id="bed3")
    assert [(s.param, s.value) for s in samples] == [(Param.HR, 72.0), (Param.SPO2, 98.0)]
    # stamped from the MDS create event's times, as a serial capture is
    assert {s.t for s in samples} == {dt.datetime(2024, 5, 17, 10, 30, 6).astimezone().timestamp()}
    assert stats.frames == 5  # the indication, the response, the event, two results
    assert dict(stats.dropped) == {
        "client_request": 1,
        "unknown_object_class 0x0009": 1,
        "not_udp": 1,
    }


def test_vigil_decode_reads_a_pcap(tmp_path: Path) -> None:
    path = tmp_path / "ward.pcap"
    path.write_bytes(classic_pcap(CONVERSATION))
    run = run_vigil("decode", "intellivue-lan", path, env={**os.environ, "TZ": "UTC"})
    assert run.returncode == 0, run.stderr
    assert [json.loads(line)["param"] for line in run.stdout.splitlines()] == ["HR", "SPO2"]
    assert "5 frames, 2 samples, dropped: client_request 1, not_udp 1, " in run.stderr


# ------------------------------------------------------------------ over real UDP

SPEED = 20.0
SCENARIO = "hypertensive-surge"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def lan_driver(clock: SimulatedClock, **fields: object) -> Driver:
    settings = TypeAdapter(DriverSettings).validate_python(
        {"kind": "intellivue-lan", "device_id": "dev", "quiet_s": 1.0, **fields}
    )
    return create_driver(settings, broker=BrokerSettings(), timeouts=TimeoutSettings(), clock=clock)


def is_subsequence(got: list[float], wanted: list[float]) -> bool:
    it = iter(wanted)
    return all(any(g == w for w in it) for g in got)


# Connect, streaming intact, damage, silence, a pulled cable and cancel over real loopback UDP
# are the contract suite's (tests/drivers/test_contract.py, the `intellivue-lan` runs); here:
# finding the monitor.


async def test_without_a_host_the_connect_indication_finds_the_monitor() -> None:
    clock = SimulatedClock(speed=SPEED)
    discovery = free_udp_port()
    async with IntelliVueLanMonitor(
        clock=clock, scenario=SCENARIO, discovery=("127.0.0.1", discovery), announce_s=0.2
    ) as monitor:
        _, port = monitor.address
        driver = lan_driver(clock, udp_port=port, discovery_port=discovery, listen="127.0.0.1")
        sink = ListSink()
        async with running_driver(driver, sink):
            await sink.wait_for(3)
        assert driver.stats.frames >= 3


async def test_no_monitor_on_the_network_is_a_lost_device() -> None:
    clock = SimulatedClock(speed=SPEED)
    driver = lan_driver(clock, udp_port=free_udp_port(), discovery_port=free_udp_port(),
                        listen="127.0.0.1")  # fmt: skip
    with pytest.raises(DeviceError, match="no connect indication"):
        await driver.run(ListSink())


def test_a_simulated_lan_capture_decodes_to_the_scenarios_values() -> None:
    t0 = 1767225600.0
    sent = record_frames(
        IntelliVueLanLink("x", DriverStats()), IntelliVueLanSide(), scenario=SCENARIO, t0=t0,
        seconds=300,
    )  # fmt: skip
    capture = pcapng([(t, ethernet(ipv4_udp(MONITOR, 24105, HOST, 50000, m))) for t, m in sent])
    samples, stats = decode_capture(capture, device_id="x")
    items = [i for i in build_scenario(SCENARIO, t0=t0, seed=1) if not isinstance(i, Step)]
    for param in (Param.HR, Param.SPO2, Param.PR):
        got = [s.value for s in samples if s.param is param]
        assert len(got) > 100
        assert is_subsequence(got, [i.value for i in items if i.param is param]), param
    assert all(t0 <= s.t < t0 + 300 for s in samples)
    assert not stats.dropped


@given(st.binary(max_size=300))
def test_any_datagram_is_counted_never_raised(data: bytes) -> None:
    link = IntelliVueLanLink("x", DriverStats())
    link.start(0.0)
    try:
        link.receive(data, 1.0)
    except ProtocolError:
        assert data[0] in {0x0A, 0x0C, 0x19}  # abort, refusal, release response
        return
    assert link.stats.frames + sum(link.stats.dropped.values()) >= (1 if data else 0)


@given(st.binary(max_size=200), st.sampled_from([b"", b"\xd4\xc3\xb2\xa1", b"\x0a\x0d\x0d\x0a"]))
def test_any_file_reads_as_datagrams_or_a_pcap_error(data: bytes, head: bytes) -> None:
    stats = PcapStats()
    with contextlib.suppress(PcapError):
        for datagram in udp_datagrams(head + data, stats):
            assert len(datagram.payload) <= len(data)
