"""The Nellcor driver: the codec's `NellcorLink` over a 9600 8N1 serial port."""

from __future__ import annotations

from typing import ClassVar

from drivers.nellcor.spec import SPEC
from drivers.serialport import SerialDriver
from drivers.spec import DeviceSpec

__all__ = ["NellcorDriver"]


class NellcorDriver(SerialDriver):
    """A Nellcor N-595 / N-560 pulse oximeter's data port (`[[drivers]] kind = "nellcor"`).

    Line settings and quiet time: `drivers/nellcor/spec.py` (docs/devices.md §2.6).
    """

    spec: ClassVar[DeviceSpec] = SPEC
