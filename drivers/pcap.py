"""The UDP datagrams of a packet capture: classic pcap and pcapng, read from bytes.

What an engineer records with tcpdump or Wireshark on a monitor's LAN (docs/intellivue.md §10):
a classic pcap file (magic ``A1B2C3D4``, microseconds, or ``A1B23C4D``, nanoseconds, in either
byte order) or a pcapng file (Section Header, Interface Description, Enhanced and Simple Packet
blocks; others skipped), with Ethernet (and 802.1Q VLAN tags), Linux cooked (SLL), BSD
loopback or raw IP link layers, IPv4 or IPv6, then UDP. Everything else (TCP, ARP, fragments
after the first, a link type not listed) is counted by reason, never an error; a file that is
neither format, or is cut inside its header, is a `PcapError`.

Written here rather than taken from dpkt or scapy: a reader of two container formats and three
headers is about 150 lines, fully typed (dpkt ships no type information for mypy --strict and
has had no release since 2022; scapy is a large interactive tool that imports much at start).
Pure: bytes in, datagrams out (docs/DESIGN.md P1).
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

__all__ = ["Datagram", "PcapError", "PcapStats", "udp_datagrams"]

# link types (tcpdump.org "LINKTYPE_" values)
_ETHERNET: Final = 1
_NULL: Final = 0  # BSD loopback: a 4-byte address family in the host's order
_RAW: Final = 101  # raw IP
_RAW_IP: Final = 228  # raw IPv4 (LINKTYPE_IPV4)
_RAW_IP6: Final = 229
_LINUX_SLL: Final = 113
_ETH_IPV4: Final = 0x0800
_ETH_IPV6: Final = 0x86DD
_ETH_VLAN: Final = frozenset({0x8100, 0x88A8})
_UDP: Final = 17
# pcapng block types
_SHB: Final = 0x0A0D0D0A
_IDB: Final = 0x00000001
_SPB: Final = 0x00000003
_EPB: Final = 0x00000006
_BYTE_ORDER_MAGIC: Final = 0x1A2B3C4D


class PcapError(ValueError):
    """Not a pcap or pcapng file, or cut inside its file header."""


@dataclass(frozen=True, slots=True)
class Datagram:
    """One UDP datagram: capture time (epoch seconds), addresses, ports, payload."""

    t: float
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes


@dataclass
class PcapStats:
    """Packets read, and those that were not UDP datagrams, by reason."""

    packets: int = 0
    skipped: Counter[str] = field(default_factory=Counter)


def udp_datagrams(data: bytes, stats: PcapStats | None = None) -> Iterator[Datagram]:
    """The UDP datagrams of a capture, in file order.

    Raises:
        PcapError: `data` is not a pcap or pcapng file.
    """
    stats = stats if stats is not None else PcapStats()
    if len(data) < 4:
        raise PcapError("not a pcap file: shorter than its magic number")
    if struct.unpack_from("<I", data)[0] == _SHB:
        packets = _pcapng(data, stats)
    else:
        packets = _classic(data, stats)
    for t, linktype, frame in packets:
        stats.packets += 1
        datagram = _udp(t, linktype, frame, stats)
        if datagram is not None:
            yield datagram


def _classic(data: bytes, stats: PcapStats) -> Iterator[tuple[float, int, bytes]]:
    magic = data[:4]
    orders = {
        b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
        b"\xa1\xb2\xc3\xd4": (">", 1e-6),
        b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
        b"\xa1\xb2\x3c\x4d": (">", 1e-9),
    }
    if magic not in orders:
        raise PcapError(f"not a pcap or pcapng file (magic {magic.hex()})")
    order, unit = orders[magic]
    if len(data) < 24:
        raise PcapError("pcap file header cut short")
    linktype = struct.unpack_from(order + "I", data, 20)[0] & 0x0FFFFFFF
    record = struct.Struct(order + "IIII")
    pos = 24
    while pos + 16 <= len(data):
        seconds, fraction, caplen, _ = record.unpack_from(data, pos)
        pos += 16
        if pos + caplen > len(data):
            stats.skipped["truncated_record"] += 1
            return
        yield seconds + fraction * unit, linktype, data[pos : pos + caplen]
        pos += caplen
    if pos != len(data):
        stats.skipped["truncated_record"] += 1


def _pcapng(data: bytes, stats: PcapStats) -> Iterator[tuple[float, int, bytes]]:
    order = "<"
    interfaces: list[tuple[int, float]] = []  # (link type, seconds per timestamp unit)
    pos = 0
    while pos + 12 <= len(data):
        block_type = struct.unpack_from(order + "I", data, pos)[0]
        if block_type == _SHB:
            magic = data[pos + 8 : pos + 12]
            order = "<" if struct.unpack("<I", magic)[0] == _BYTE_ORDER_MAGIC else ">"
            interfaces = []  # a new section numbers its interfaces afresh
        length = struct.unpack_from(order + "I", data, pos + 4)[0]
        if length < 12 or length % 4 or pos + length > len(data):
            stats.skipped["truncated_block"] += 1
            return
        body = data[pos + 8 : pos + length - 4]
        pos += length
        if block_type == _IDB and len(body) >= 8:
            linktype = struct.unpack_from(order + "H", body)[0]
            interfaces.append((linktype, _ts_unit(body[8:], order)))
        elif block_type == _EPB and len(body) >= 20:
            iface, high, low, caplen, _ = struct.unpack_from(order + "IIIII", body)
            if iface >= len(interfaces) or 20 + caplen > len(body):
                stats.skipped["bad_block"] += 1
                continue
            linktype, unit = interfaces[iface]
            yield ((high << 32) | low) * unit, linktype, body[20 : 20 + caplen]
        elif block_type == _SPB and len(body) >= 4 and interfaces:
            # no time stamp; its interface is the first (pcapng §4.4)
            yield 0.0, interfaces[0][0], body[4:]
    if pos != len(data):
        stats.skipped["truncated_block"] += 1


def _ts_unit(options: bytes, order: str) -> float:
    """The if_tsresol option's unit (microseconds when absent)."""
    pos = 0
    while pos + 4 <= len(options):
        code, length = struct.unpack_from(order + "HH", options, pos)
        if code == 0:
            break
        if code == 9 and length >= 1:  # if_tsresol
            resolution = options[pos + 4]
            return 2.0 ** -(resolution & 0x7F) if resolution & 0x80 else 10.0**-resolution
        pos += 4 + (length + 3) // 4 * 4
    return 1e-6


def _udp(  # noqa: PLR0911 - one way out per header that is not what is read
    t: float, linktype: int, frame: bytes, stats: PcapStats
) -> Datagram | None:
    ip = _ip_packet(linktype, frame, stats)
    if ip is None:
        return None
    version = ip[0] >> 4 if ip else 0
    if version == 4 and len(ip) >= 20:
        header = (ip[0] & 0x0F) * 4
        fragment = struct.unpack_from(">H", ip, 6)[0] & 0x1FFF
        protocol = ip[9]
        src, dst = _ipv4(ip[12:16]), _ipv4(ip[16:20])
        if fragment:
            stats.skipped["ip_fragment"] += 1
            return None
    elif version == 6 and len(ip) >= 40:
        header = 40
        protocol = ip[6]
        src, dst = _ipv6(ip[8:24]), _ipv6(ip[24:40])
    else:
        stats.skipped["not_ip"] += 1
        return None
    if protocol != _UDP:
        stats.skipped["not_udp"] += 1
        return None
    udp = ip[header:]
    if len(udp) < 8:
        stats.skipped["truncated_udp"] += 1
        return None
    sport, dport, length = struct.unpack_from(">HHH", udp)
    if length < 8 or length > len(udp):
        stats.skipped["truncated_udp"] += 1  # captured short (snap length) or damaged
        return None
    return Datagram(t, src, sport, dst, dport, udp[8:length])


def _ip_packet(  # noqa: PLR0911 - one way out per link type
    linktype: int, frame: bytes, stats: PcapStats
) -> bytes | None:
    if linktype == _ETHERNET:
        if len(frame) < 14:
            stats.skipped["truncated_link"] += 1
            return None
        ethertype = struct.unpack_from(">H", frame, 12)[0]
        pos = 14
        while ethertype in _ETH_VLAN and len(frame) >= pos + 4:
            ethertype = struct.unpack_from(">H", frame, pos + 2)[0]
            pos += 4
        if ethertype not in {_ETH_IPV4, _ETH_IPV6}:
            stats.skipped["not_ip"] += 1
            return None
        return frame[pos:]
    if linktype == _LINUX_SLL:
        return frame[16:] if len(frame) >= 16 else None
    if linktype == _NULL:
        return frame[4:] if len(frame) >= 4 else None
    if linktype in {_RAW, _RAW_IP, _RAW_IP6}:
        return frame
    stats.skipped[f"link_type_{linktype}"] += 1
    return None


def _ipv4(raw: bytes) -> str:
    return ".".join(str(b) for b in raw)


def _ipv6(raw: bytes) -> str:
    return ":".join(f"{a:x}" for a in struct.unpack(">8H", raw))
