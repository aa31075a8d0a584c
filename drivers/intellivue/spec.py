"""Philips IntelliVue MIB/RS232's spec (docs/intellivue.md, docs/devices.md §2.4)."""

from __future__ import annotations

from typing import Literal

from drivers.link import LineSettings
from drivers.spec import MONITOR_PARAMS, Contract, SerialSettings, device_spec

__all__ = ["SPEC", "IntelliVueSettings"]


class IntelliVueSettings(SerialSettings):
    """Philips IntelliVue Data Export over MIB/RS232 (115200 8N1).

    `poll`: the extended poll, as real clients use (the default), or the single poll, the
    fallback for a monitor that does not offer it (docs/intellivue.md §5).
    """

    kind: Literal["intellivue"]
    poll: Literal["extended", "single"] = "extended"


SPEC = device_spec(
    IntelliVueSettings,
    summary="a Philips IntelliVue MP monitor, Data Export over MIB/RS232 (numerics polled)",
    driver="IntelliVueDriver",
    # 115200 bit/s, 8N1, no handshake (docs/intellivue.md §1). The monitor sends a poll result
    # every second (extended poll, or a single poll a second), so ten seconds without a valid
    # frame means the cable, the port or the association is gone (the monitor's own
    # association timeout is 10 s too).
    line=LineSettings(baudrate=115200),
    quiet_s=10.0,
    link="IntelliVueLink",
    simulator="simulators.intellivue:IntelliVueSide",
    contract=Contract(
        MONITOR_PARAMS,
        variants=((("poll", "single"),),),  # the fallback (docs/intellivue.md §5)
    ),
)
