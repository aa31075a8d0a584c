"""A raw capture made in memory: a driver's link and a simulator's monitor side, wired together.

The host half (`drivers.link.LinkProtocol`) and the device half
(`simulators.serial_monitor.MonitorSide`) talk with no port between them, in scenario time, and
every byte the monitor sends is kept: the file a serial sniffer would have written. Used to
make large captures for `bench/decode.py` and test captures for `vigil decode`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NotRequired, TypedDict, Unpack

from kernel.vocabulary import Step
from simulators.scenarios import build_scenario

if TYPE_CHECKING:
    from drivers.link import LinkProtocol
    from kernel.vocabulary import Sample
    from simulators.serial_monitor import MonitorSide

__all__ = ["Recording", "record_capture", "record_frames"]


class _Wire:
    """The cable: carries the host's bytes to the monitor and keeps what the monitor sends."""

    def __init__(self, link: LinkProtocol, side: MonitorSide) -> None:
        self.link = link
        self.side = side
        self.sent: list[tuple[float, bytes]] = []

    def host_says(self, data: bytes, now: float) -> None:
        """`data` from the host; the conversation goes on until neither side answers."""
        pending = data
        while pending:
            answers = self.side.receive(pending, now)
            pending = b""
            for frame in answers:
                pending += self.monitor_says(frame, now)

    def monitor_says(self, frame: bytes, now: float) -> bytes:
        """`frame` from the monitor; the host's reply."""
        self.sent.append((now, frame))
        return self.link.receive(frame, now).reply

    def second(self, group: list[Sample]) -> None:
        now = group[0].t
        self.host_says(self.link.timer(now), now)
        for frame in self.side.second(group, now):
            self.host_says(self.monitor_says(frame, now), now)


class Recording(TypedDict):
    """What a capture records: the first `seconds` of `scenario` from `t0` (noise `seed`)."""

    scenario: str
    t0: float
    seconds: float
    seed: NotRequired[int]


def record_capture(link: LinkProtocol, side: MonitorSide, **recording: Unpack[Recording]) -> bytes:
    """The bytes `side` sends to `link` over the first `seconds` of `scenario` from `t0`.

    The host's timer runs once per scenario second, before the monitor's output of that
    second, as a live driver's would.
    """
    return b"".join(frame for _, frame in record_frames(link, side, **recording))


def record_frames(
    link: LinkProtocol,
    side: MonitorSide,
    *,
    scenario: str,
    t0: float,
    seconds: float,
    seed: int = 1,
) -> list[tuple[float, bytes]]:
    """As `record_capture`, frame by frame, each with the scenario time it was sent at."""
    wire = _Wire(link, side)
    wire.host_says(link.start(t0), t0)
    group: list[Sample] = []
    for item in build_scenario(scenario, t0=t0, seed=seed):
        if item.t - t0 >= seconds:
            break
        if isinstance(item, Step):
            continue
        if group and item.t != group[0].t:
            wire.second(group)
            group = []
        group.append(item)
    if group:
        wire.second(group)
    return wire.sent
