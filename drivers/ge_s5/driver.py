"""The GE S/5 driver: the codec's `GeS5Link` over a 19200 8E1 RTS/CTS serial port."""

from __future__ import annotations

from typing import ClassVar

from drivers.ge_s5.codec import GeS5Link, NibpTracker
from drivers.ge_s5.spec import SPEC
from drivers.serialport import SerialDriver
from drivers.spec import DeviceSpec

__all__ = ["GeS5Driver"]


class GeS5Driver(SerialDriver):
    """A GE Datex-Ohmeda S/5 or CARESCAPE monitor's computer interface (`kind = "ge-s5"`).

    Line settings (19200 8E1, RTS/CTS) and quiet time (three missed 5-s records):
    `drivers/ge_s5/spec.py` (docs/devices.md §2.3).

    The NIBP determination tracker outlives connections: a determination already reported is
    not reported again after a reconnection (`NibpTracker`).
    """

    spec: ClassVar[DeviceSpec] = SPEC

    _nibp: NibpTracker | None = None

    def protocol(self) -> GeS5Link:
        """A fresh session that asks for displayed values; counters go to the driver's `stats`."""
        if self._nibp is None:
            self._nibp = NibpTracker()
        return GeS5Link(self.device_id, self.stats, nibp=self._nibp)
