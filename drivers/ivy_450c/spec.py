"""Ivy Biomedical 450C ANSAR-B's spec (docs/devices.md §2.5)."""

from __future__ import annotations

from typing import Literal

from drivers.link import LineSettings
from drivers.spec import Contract, DeviceSpec, SerialSettings
from kernel.vocabulary import NIBP_PARAMS, Param

__all__ = ["SPEC", "Ivy450cSettings"]


class Ivy450cSettings(SerialSettings):
    """Ivy Biomedical 450C, ANSAR-B output (9600 8N1)."""

    kind: Literal["ivy-450c"]


SPEC = DeviceSpec(
    kind="ivy-450c",
    summary="an Ivy Biomedical 450C monitor, ANSAR-B serial output",
    settings=Ivy450cSettings,
    transport="serial",
    driver="drivers.ivy_450c.driver:Ivy450cDriver",
    # 9600 bit/s, 8N1, no handshake (OpenICE's Ivy 450C adapter). One message a second, so five
    # seconds without a valid one means the cable is out or the monitor is off.
    line=LineSettings(baudrate=9600),
    quiet_s=5.0,
    link="drivers.ivy_450c.codec:IvyLink",
    decode="drivers.ivy_450c.codec:decode_capture",
    simulator="simulators.ivy_450c:IvySide",
    contract=Contract(frozenset({Param.HR, Param.SPO2, Param.PR, *NIBP_PARAMS})),
)
