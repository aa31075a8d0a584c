"""Philips IntelliVue over the LAN's spec (docs/intellivue.md §10, docs/devices.md §2.4)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from drivers.spec import MONITOR_PARAMS, Contract, DriverSettingsBase, device_spec
from kernel.settings import Number

__all__ = ["SPEC", "IntelliVueLanSettings"]


class IntelliVueLanSettings(DriverSettingsBase):
    """Philips IntelliVue Data Export over UDP.

    `host`: the monitor's address; without it, the first monitor whose connect indication
    reaches `discovery_port` (on `listen`) is taken. `udp_port`: its Data Export port. `poll` as
    for the serial kind (docs/intellivue.md §5).
    """

    kind: Literal["intellivue-lan"]
    host: str | None = Field(default=None, description="the monitor's IP address or name")
    udp_port: int = Field(default=24105, ge=1, le=65535)
    discovery_port: int = Field(default=24005, ge=1, le=65535)
    listen: str = Field(default="0.0.0.0", description="where to hear connect indications")  # noqa: S104 - a broadcast is heard on every interface
    quiet_s: Number | None = Field(default=None, gt=0)
    poll: Literal["extended", "single"] = "extended"

    def connection(self) -> str:
        """Where the monitor is, as an alarm message says it."""
        if self.host is None:
            return f"udp, discovered on port {self.discovery_port}"
        return f"udp {self.host}:{self.udp_port}"


SPEC = device_spec(
    IntelliVueLanSettings,
    summary="a Philips IntelliVue MP monitor, Data Export over the LAN (UDP, numerics polled)",
    transport="udp",
    driver="IntelliVueLanDriver",
    # As on the serial link, a result comes every second: ten seconds without a valid message
    # means the network or the association is gone (docs/intellivue.md §5).
    quiet_s=10.0,
    link="IntelliVueLanLink",
    # the monitor side, unframed; served over UDP by `vigil simulate intellivue-lan --udp`
    simulator="simulators.intellivue:IntelliVueLanSide",
    # no framing: a datagram cut short is a message that does not parse, not a cut frame
    contract=Contract(MONITOR_PARAMS, names_cut_frames=False),
)
