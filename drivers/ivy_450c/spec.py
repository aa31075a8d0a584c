"""Ivy Biomedical 450C ANSAR-B's spec (docs/devices.md §2.5)."""

from __future__ import annotations

from typing import Literal

from drivers.link import LineSettings
from drivers.spec import MONITOR_PARAMS, Contract, SerialSettings, device_spec

__all__ = ["SPEC", "Ivy450cSettings"]


class Ivy450cSettings(SerialSettings):
    """Ivy Biomedical 450C, ANSAR-B output (9600 8N1)."""

    kind: Literal["ivy-450c"]


SPEC = device_spec(
    Ivy450cSettings,
    summary="an Ivy Biomedical 450C monitor, ANSAR-B serial output",
    driver="Ivy450cDriver",
    # 9600 bit/s, 8N1, no handshake (OpenICE's Ivy 450C adapter). One message a second, so five
    # seconds without a valid one means the cable is out or the monitor is off.
    line=LineSettings(baudrate=9600),
    quiet_s=5.0,
    link="IvyLink",
    simulator="simulators.ivy_450c:IvySide",
    contract=Contract(MONITOR_PARAMS),
)
