"""Philips IntelliVue MIB/RS232's spec (docs/intellivue.md, docs/devices.md §2.4)."""

from __future__ import annotations

from typing import Literal

from drivers.link import LineSettings
from drivers.spec import Contract, DeviceSpec, SerialSettings
from kernel.vocabulary import NIBP_PARAMS, Param

__all__ = ["SPEC", "IntelliVueSettings"]


class IntelliVueSettings(SerialSettings):
    """Philips IntelliVue Data Export over MIB/RS232 (115200 8N1).

    `poll`: the extended poll, as real clients use (the default), or the single poll, the
    fallback for a monitor that does not offer it (docs/intellivue.md §5).
    """

    kind: Literal["intellivue"]
    poll: Literal["extended", "single"] = "extended"


SPEC = DeviceSpec(
    kind="intellivue",
    summary="a Philips IntelliVue MP monitor, Data Export over MIB/RS232 (numerics polled)",
    settings=IntelliVueSettings,
    transport="serial",
    driver="drivers.intellivue.driver:IntelliVueDriver",
    # 115200 bit/s, 8N1, no handshake (docs/intellivue.md §1). The monitor sends a poll result
    # every second (extended poll, or a single poll a second), so ten seconds without a valid
    # frame means the cable, the port or the association is gone (the monitor's own
    # association timeout is 10 s too).
    line=LineSettings(baudrate=115200),
    quiet_s=10.0,
    link="drivers.intellivue.codec:IntelliVueLink",
    decode="drivers.intellivue.codec:decode_capture",
    simulator="simulators.intellivue:IntelliVueSide",
    contract=Contract(
        frozenset({Param.HR, Param.SPO2, Param.PR, *NIBP_PARAMS}),
        variants=((("poll", "single"),),),  # the fallback (docs/intellivue.md §5)
    ),
)
