"""The GE S/5 driver: the codec's `GeS5Link` over a 19200 8E1 RTS/CTS serial port."""

from __future__ import annotations

from typing import ClassVar

from drivers.ge_s5.codec import GeS5Link, NibpTracker
from drivers.serialport import LineSettings, SerialDriver

__all__ = ["GeS5Driver"]


class GeS5Driver(SerialDriver):
    """A GE Datex-Ohmeda S/5 or CARESCAPE monitor's computer interface (`kind = "ge-s5"`).

    19200 bit/s, 8 data bits, even parity, 1 stop bit, RTS/CTS handshake, not configurable on
    the monitor ([CI] p.3; docs/devices.md §2.3). The link asks for displayed values every
    5 s, the fastest the monitor sends them, so 15 s without a valid record is three missed
    records: the cable is out, the monitor is off or has dropped the request.

    The NIBP determination tracker outlives connections: a determination already reported is
    not reported again after a reconnection (`NibpTracker`).
    """

    line: ClassVar[LineSettings] = LineSettings(baudrate=19200, parity="E", rtscts=True)
    quiet_s: ClassVar[float] = 15.0

    _nibp: NibpTracker | None = None

    def protocol(self) -> GeS5Link:
        """A fresh session that asks for displayed values; counters go to the driver's `stats`."""
        if self._nibp is None:
            self._nibp = NibpTracker()
        return GeS5Link(self.device_id, self.stats, nibp=self._nibp)
