"""GE Datex-Ohmeda S/5 computer interface's spec (docs/devices.md §2.3)."""

from __future__ import annotations

from typing import Literal

from drivers.link import LineSettings
from drivers.spec import MONITOR_PARAMS, Contract, SerialSettings, device_spec

__all__ = ["SPEC", "GeS5Settings"]


class GeS5Settings(SerialSettings):
    """GE Datex-Ohmeda S/5 computer interface (19200 8E1, RTS/CTS)."""

    kind: Literal["ge-s5"]


SPEC = device_spec(
    GeS5Settings,
    summary="a GE Datex-Ohmeda S/5 monitor, computer interface (DRI displayed values)",
    driver="GeS5Driver",
    # 19200 bit/s, 8 data bits, even parity, 1 stop bit, RTS/CTS, not configurable on the
    # monitor ([CI] p.3). The link asks for displayed values every 5 s, the fastest the monitor
    # sends them, so 15 s without a valid record is three missed records.
    line=LineSettings(baudrate=19200, parity="E", rtscts=True),
    quiet_s=15.0,
    link="GeS5Link",
    simulator="simulators.ge_s5:GeS5Side",
    # GE S/5's flags split a cut record's halves into frames that fail their length or checksum
    contract=Contract(MONITOR_PARAMS, names_cut_frames=False),
)
