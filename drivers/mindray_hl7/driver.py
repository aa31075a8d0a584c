"""The Mindray HL7 driver: the codec's `MindrayLink` over MLLP/TCP, listening or connecting."""

from __future__ import annotations

from typing import ClassVar

from drivers.mindray_hl7.spec import SPEC
from drivers.spec import DeviceSpec
from drivers.tcp import TcpDriver

__all__ = ["MindrayHl7Driver"]


class MindrayHl7Driver(TcpDriver):
    """A Mindray BeneView / ePM monitor's HL7 output (`[[drivers]] kind = "mindray-hl7"`).

    Quiet time: `drivers/mindray_hl7/spec.py` (docs/devices.md §3.1). The last NIBP
    determination passed on is remembered across connections (`DeterminationMemory`).
    """

    spec: ClassVar[DeviceSpec] = SPEC
    remembers_determinations: ClassVar[bool] = True
