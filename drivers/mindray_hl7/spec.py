"""Mindray HL7 v2.3.1 over MLLP/TCP's spec (docs/devices.md §3.1)."""

from __future__ import annotations

from typing import Literal

from drivers.spec import Contract, DeviceSpec, TcpSettings
from kernel.vocabulary import NIBP_PARAMS, Param

__all__ = ["SPEC", "MindrayHl7Settings"]


class MindrayHl7Settings(TcpSettings):
    """A Mindray BeneView / ePM monitor (or eGateway) sending HL7 v2.3.1 ORU over MLLP."""

    kind: Literal["mindray-hl7"]


SPEC = DeviceSpec(
    kind="mindray-hl7",
    summary="a Mindray BeneView / ePM monitor, HL7 v2.3.1 ORU over MLLP/TCP",
    settings=MindrayHl7Settings,
    transport="tcp",
    driver="drivers.mindray_hl7.driver:MindrayHl7Driver",
    # the monitor sends each parameter group every second: five seconds without a valid
    # message means the network or the monitor is gone
    quiet_s=5.0,
    link="drivers.mindray_hl7.codec:MindrayLink",
    decode="drivers.mindray_hl7.codec:decode_capture",
    simulator="simulators.mindray_hl7:MindraySide",
    contract=Contract(frozenset({Param.HR, Param.SPO2, Param.PR, *NIBP_PARAMS})),
)
