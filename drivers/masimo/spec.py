"""Masimo ASCII 1's spec (docs/devices.md §2.1)."""

from __future__ import annotations

from typing import Literal

from drivers.link import LineSettings
from drivers.spec import OXIMETER_PARAMS, Contract, SerialSettings, device_spec

__all__ = ["SPEC", "MasimoSettings"]


class MasimoSettings(SerialSettings):
    """Masimo ASCII-1 serial output (9600 8N1)."""

    kind: Literal["masimo"]


SPEC = device_spec(
    MasimoSettings,
    summary="a Masimo Radical-7 / Rad-8 pulse oximeter, ASCII 1 output",
    driver="MasimoDriver",
    # 9600 bit/s, 8N1, no handshake (Rad-87 operator's manual). The monitor sends a line every
    # second, so five seconds without a valid line means it is unplugged, off, or set to
    # another output mode (ASCII 2 is the Rad-8 default).
    line=LineSettings(baudrate=9600),
    quiet_s=5.0,
    link="MasimoLink",
    simulator="simulators.masimo:MasimoSide",
    contract=Contract(OXIMETER_PARAMS),
)
