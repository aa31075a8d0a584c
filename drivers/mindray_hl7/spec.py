"""Mindray HL7 v2.3.1 over MLLP/TCP's spec (docs/devices.md §3.1)."""

from __future__ import annotations

from typing import Literal

from drivers.spec import MONITOR_PARAMS, Contract, TcpSettings, device_spec

__all__ = ["SPEC", "MindrayHl7Settings"]


class MindrayHl7Settings(TcpSettings):
    """A Mindray BeneView / ePM monitor (or eGateway) sending HL7 v2.3.1 ORU over MLLP."""

    kind: Literal["mindray-hl7"]


SPEC = device_spec(
    MindrayHl7Settings,
    summary="a Mindray BeneView / ePM monitor, HL7 v2.3.1 ORU over MLLP/TCP",
    driver="MindrayHl7Driver",
    # the monitor sends each parameter group every second: five seconds without a valid
    # message means the network or the monitor is gone
    quiet_s=5.0,
    link="MindrayLink",
    simulator="simulators.mindray_hl7:MindraySide",
    contract=Contract(MONITOR_PARAMS),
)
