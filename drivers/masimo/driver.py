"""The Masimo ASCII 1 driver: the codec's `MasimoLink` over a 9600 8N1 serial port."""

from __future__ import annotations

from typing import ClassVar

from drivers.masimo.spec import SPEC
from drivers.serialport import SerialDriver
from drivers.spec import DeviceSpec

__all__ = ["MasimoDriver"]


class MasimoDriver(SerialDriver):
    """A Masimo pulse oximeter on a serial port (`[[drivers]] kind = "masimo"`).

    Line settings and quiet time: `drivers/masimo/spec.py` (docs/devices.md §2.1).
    """

    spec: ClassVar[DeviceSpec] = SPEC
