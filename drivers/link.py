"""The link contract, pure: line settings and the sans-I/O session every byte-stream device keeps.

Each device folder that speaks over a byte stream (a serial port, a TCP connection) has a
sans-I/O codec and a `LinkProtocol`: one object per connection that turns received bytes into
samples and replies, and says what to send at start and on each timer tick (a request, a poll,
a keep-alive). The async drivers (`drivers.serialport`, `drivers.tcp`) *have* the transport and
run any `LinkProtocol` over it (docs/DESIGN.md P1, P7). Nothing here does I/O, so a device's spec
and its simulator may import it without pulling in pyserial or asyncio.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from kernel.vocabulary import Sample

__all__ = [
    "LineSettings",
    "LinkProtocol",
    "ProtocolError",
    "Received",
    "UnaskedLink",
    "line_for",
]


class ProtocolError(Exception):
    """The device ended or refused the session (e.g. released the association)."""


@dataclass(frozen=True, slots=True)
class LineSettings:
    """Serial line parameters (pyserial names and values)."""

    baudrate: int
    bytesize: Literal[5, 6, 7, 8] = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    rtscts: bool = False


@dataclass(frozen=True, slots=True)
class Received:
    """What a chunk of received bytes gave: samples for the bed, bytes to send back."""

    samples: tuple[Sample, ...] = ()
    reply: bytes = b""


def line_for(port: str, line: LineSettings) -> LineSettings:
    """The settings to open `port` with: `line`, except on a pseudo-terminal.

    A pty has no UART: parity and RTS/CTS mean nothing on it, and Linux refuses PARENB on one
    (EINVAL from tcsetattr). A simulator on a pty (`vigil simulate … --pty`) therefore gets the
    device's baud rate with 8N1 and no handshake; a real port always gets the device's settings.
    """
    if os.path.realpath(port).startswith("/dev/pts/"):
        return LineSettings(baudrate=line.baudrate)
    return line


class LinkProtocol(Protocol):
    """The sans-I/O session with one device, new for every connection.

    Every method is pure computation on the object's state: no I/O, no clock reads (`now` is
    the daemon clock's epoch seconds UTC, given by the caller). Counting goes to the
    `DriverStats` the protocol was made with: ``frames`` for every valid frame (this is what
    keeps the device alive), ``dropped`` by reason for everything discarded.
    """

    def start(self, now: float) -> bytes:
        """Bytes to send once the connection is up (a request, an association); may be empty."""
        ...

    def receive(self, data: bytes, now: float) -> Received:
        """Feed received bytes (any split, any garbage); never raises except `ProtocolError`."""
        ...

    def timer(self, now: float) -> bytes:
        """Called every `timer_s` of daemon-clock time: bytes to send, if any."""
        ...


class UnaskedLink:
    """A `LinkProtocol` base for a device that sends unasked and needs no keep-alive.

    Masimo ASCII 1, the Nellcor and Ivy ANSAR-B outputs and Mindray's HL7 push: the host only
    listens (docs/devices.md), so it sends nothing at start or on a tick; each device's link
    says what a chunk received gives (`receive`).
    """

    def start(self, now: float) -> bytes:  # noqa: ARG002 - the LinkProtocol contract
        """Nothing: the device needs no request."""
        return b""

    def timer(self, now: float) -> bytes:  # noqa: ARG002 - the LinkProtocol contract
        """Nothing: the device has no keep-alive."""
        return b""
