"""The Ivy 450C driver: the codec's `IvyLink` over a 9600 8N1 serial port."""

from __future__ import annotations

from typing import ClassVar

from drivers.ivy_450c.spec import SPEC
from drivers.serialport import SerialDriver
from drivers.spec import DeviceSpec

__all__ = ["Ivy450cDriver"]


class Ivy450cDriver(SerialDriver):
    """An Ivy Biomedical 450C's ANSAR-B output (`[[drivers]] kind = "ivy-450c"`).

    Line settings and quiet time: `drivers/ivy_450c/spec.py` (docs/devices.md §2.5). The last
    NIBP determination passed on is remembered across connections (`DeterminationMemory`).
    """

    spec: ClassVar[DeviceSpec] = SPEC
    remembers_determinations: ClassVar[bool] = True
