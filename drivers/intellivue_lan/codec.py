"""Sans-I/O IntelliVue Data Export over UDP: the serial session without its framing.

On the LAN each UDP datagram carries one message, the same user data a MIB/RS232 frame carries
(docs/intellivue.md §10): no BOF/EOF, no escapes, no FCS (UDP's checksum guards it). So the
session, the polls, the counting of unused messages and the numerics are those of
`drivers.intellivue.codec.IntelliVueLink`; only how messages come and go differs. A reply is
one message, so one datagram (each received message calls for one reply at most).

The monitor announces itself with a connect indication, broadcast to UDP port 24005 every few
seconds: an unconfirmed event report (NOM_NOTI_CONN_INDIC) after the nomenclature version. A
driver without a configured `host` takes the first sender of one as its monitor
(`is_connect_indication`); on the association port it is counted as used.

`decode_capture` reads a pcap or pcapng capture (`drivers.pcap`) and decodes the datagrams the
monitor sent from its Data Export port (and its connect indications); the client's own
requests and any other UDP traffic are counted by what they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from drivers.base import DriverStats
from drivers.intellivue.codec import IntelliVueLink, decode_messages
from drivers.intellivue.messages import (
    NOM_NOTI_CONN_INDIC,
    EventReport,
    MessageError,
    parse_message,
)
from drivers.pcap import PcapError, PcapStats, udp_datagrams
from kernel.vocabulary import Sample

__all__ = [
    "DATA_EXPORT_PORT",
    "DISCOVERY_PORT",
    "IntelliVueLanLink",
    "decode_capture",
    "is_connect_indication",
]

# UDP ports of the guide ("UDP Port Number"): the monitor's connect indications go to 24005,
# its Data Export protocol listens on 24105 (docs/devices.md §2.4).
DISCOVERY_PORT: Final = 24005
DATA_EXPORT_PORT: Final = 24105


@dataclass
class IntelliVueLanLink(IntelliVueLink):
    """`IntelliVueLink` over UDP: `receive` takes one datagram; every reply is one datagram."""

    def _messages(self, data: bytes) -> list[bytes]:
        return [data] if data else []

    def _wrap(self, message: bytes) -> bytes:
        return message


def is_connect_indication(datagram: bytes) -> bool:
    """Whether a datagram is a monitor's connect indication."""
    try:
        message = parse_message(datagram)
    except MessageError:
        return False
    return isinstance(message, EventReport) and message.event_type == NOM_NOTI_CONN_INDIC


def decode_capture(data: bytes, *, device_id: str) -> tuple[list[Sample], DriverStats]:
    """The samples of a pcap or pcapng capture of a monitor's LAN traffic, and what was not used.

    Datagrams from UDP port 24105 (the monitor's Data Export side) are decoded as the serial
    decoder decodes frames; connect indications (to port 24005) are counted as frames; what the
    client sent (to port 24105) counts as ``client_request``, other UDP as ``other_udp``, and
    packets that are not UDP by the reader's reason (``not_udp``...). A file that is not a
    capture counts once as ``not_pcap``.
    """
    stats = DriverStats()
    pcap = PcapStats()
    messages: list[bytes] = []
    try:
        for datagram in udp_datagrams(data, pcap):
            if datagram.sport == DATA_EXPORT_PORT:
                messages.append(datagram.payload)
            elif datagram.dport == DISCOVERY_PORT and is_connect_indication(datagram.payload):
                stats.frames += 1
            elif datagram.dport == DATA_EXPORT_PORT:
                stats.drop("client_request")
            else:
                stats.drop("other_udp")
    except PcapError:
        stats.drop("not_pcap")
    for reason, n in pcap.skipped.items():
        stats.drop(reason, n)
    samples = decode_messages(messages, stats=stats, device_id=device_id)
    stats.samples = len(samples)
    return samples, stats
