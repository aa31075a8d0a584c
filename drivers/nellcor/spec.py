"""Nellcor N-595 / N-560 ASCII output's spec (docs/devices.md §2.6)."""

from __future__ import annotations

from typing import Literal

from drivers.link import LineSettings
from drivers.spec import OXIMETER_PARAMS, Contract, SerialSettings, device_spec

__all__ = ["SPEC", "NellcorSettings"]


class NellcorSettings(SerialSettings):
    """Nellcor N-595 / N-560 pulse oximeter, ASCII real-time output (9600 8N1)."""

    kind: Literal["nellcor"]


SPEC = device_spec(
    NellcorSettings,
    summary="a Nellcor N-595 / N-560 pulse oximeter, ASCII real-time data port output",
    driver="NellcorDriver",
    # 9600 bit/s, 8N1, no handshake (OpenICE's N-595 adapter). A line every 2 s, so ten seconds
    # without a valid line is five missed lines: the cable is out or the oximeter is off.
    line=LineSettings(baudrate=9600),
    quiet_s=10.0,
    link="NellcorLink",
    simulator="simulators.nellcor:NellcorSide",
    contract=Contract(OXIMETER_PARAMS),
)
