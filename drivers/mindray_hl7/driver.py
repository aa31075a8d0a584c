"""The Mindray HL7 driver: the codec's `MindrayLink` over MLLP/TCP, listening or connecting."""

from __future__ import annotations

from typing import ClassVar

from drivers.mindray_hl7.codec import MindrayLink
from drivers.mindray_hl7.spec import SPEC
from drivers.samples import DeterminationMemory
from drivers.spec import DeviceSpec
from drivers.tcp import TcpDriver

__all__ = ["MindrayHl7Driver"]


class MindrayHl7Driver(TcpDriver):
    """A Mindray BeneView / ePM monitor's HL7 output (`[[drivers]] kind = "mindray-hl7"`).

    Quiet time: `drivers/mindray_hl7/spec.py` (docs/devices.md §3.1). The last NIBP
    determination passed on is remembered across connections (`DeterminationMemory`).
    """

    spec: ClassVar[DeviceSpec] = SPEC

    _cuff: DeterminationMemory | None = None

    def protocol(self) -> MindrayLink:
        """A fresh MLLP stream; counters go to the driver's `stats`."""
        if self._cuff is None:
            self._cuff = DeterminationMemory()
        return MindrayLink(self.device_id, self.stats, self._cuff)
