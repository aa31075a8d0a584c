"""The Masimo ASCII 1 driver: the codec's `MasimoLink` over a 9600 8N1 serial port."""

from __future__ import annotations

from typing import ClassVar

from drivers.masimo.codec import MasimoLink
from drivers.serialport import LineSettings, SerialDriver

__all__ = ["MasimoDriver"]


class MasimoDriver(SerialDriver):
    """A Masimo pulse oximeter on a serial port (`[[drivers]] kind = "masimo"`).

    9600 bit/s, 8 data bits, no parity, 1 stop bit, no handshake (docs/devices.md §2.1;
    Rad-87 operator's manual). The monitor sends a line every second, so five seconds without a
    valid line means it is unplugged, off, or set to another output mode (ASCII 2 is the Rad-8
    default).
    """

    line: ClassVar[LineSettings] = LineSettings(baudrate=9600)
    quiet_s: ClassVar[float] = 5.0

    def protocol(self) -> MasimoLink:
        """A fresh line decoder; counters go to the driver's `stats`."""
        return MasimoLink(self.device_id, self.stats)
