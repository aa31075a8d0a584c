"""Serial simulators count the samples they sent, not the scenario's: what the host can receive."""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import TYPE_CHECKING

import pytest

from drivers.base import DriverStats
from drivers.ge_s5.codec import GeS5Link
from drivers.ge_s5.spec import SPEC as GE_S5
from drivers.intellivue.spec import SPEC as INTELLIVUE
from drivers.masimo.codec import MasimoLink
from drivers.masimo.spec import SPEC as MASIMO
from kernel.clock import SimulatedClock
from kernel.vocabulary import Param, Sample
from simulators import ge_s5, intellivue, masimo
from simulators.scenarios import build_scenario
from simulators.serial_monitor import SerialMonitor

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from drivers.link import LineSettings
    from simulators.serial_monitor import MonitorSide

SPEED = 200.0
SCENARIO = "hypertensive-surge"
SECONDS = 400.0  # the pre phase, with its two baseline cuff determinations


def _scenario_samples(t0: float) -> list[Sample]:
    return [
        s
        for s in build_scenario(SCENARIO, t0=t0, seed=1, device_id="mon1")
        if isinstance(s, Sample) and s.t <= t0 + SECONDS
    ]


async def test_the_masimo_simulator_counts_the_spo2_and_pr_it_sent(tmp_path: Path) -> None:
    clock = SimulatedClock(speed=SPEED)
    t0 = clock.now()
    link = tmp_path / "ox"
    monitor = SerialMonitor(
        masimo.MasimoSide,
        clock=clock,
        scenario=SCENARIO,
        line=MASIMO.serial_line,
        pty=link,
        t0=t0,
        until=t0 + SECONDS,
    )
    host = MasimoLink("ox", DriverStats())
    received: list[Sample] = []
    async with monitor:
        fd = os.open(link, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        loop = asyncio.get_running_loop()

        def readable() -> None:
            with contextlib.suppress(BlockingIOError):
                received.extend(host.receive(os.read(fd, 4096), clock.now()).samples)

        loop.add_reader(fd, readable)
        try:
            async with asyncio.timeout(30):
                await monitor.wait()
            await asyncio.sleep(0.2)  # the last line's bytes, on their way through the pty
        finally:
            loop.remove_reader(fd)
            os.close(fd)
    scenario = _scenario_samples(t0)
    oximetry = [s for s in scenario if s.param in {Param.SPO2, Param.PR}]
    # ASCII 1 carries SpO2 and pulse rate only: no ECG heart rate, no cuff
    assert monitor.stats.samples == len(oximetry) < len(scenario)
    assert monitor.stats.unsent == 0
    assert len([s for s in received if s.valid]) == monitor.stats.samples


@pytest.mark.parametrize(
    ("side", "line"),
    [(ge_s5.GeS5Side, GE_S5.serial_line), (intellivue.IntelliVueSide, INTELLIVUE.serial_line)],
    ids=["ge-s5", "intellivue"],
)
async def test_a_polled_monitor_nobody_polls_has_sent_no_samples(
    tmp_path: Path, side: Callable[[], MonitorSide], line: LineSettings
) -> None:
    clock = SimulatedClock(speed=SPEED * 5)
    t0 = clock.now()
    monitor = SerialMonitor(
        side, clock=clock, scenario=SCENARIO, line=line, pty=tmp_path / "mon", t0=t0, until=t0 + 60
    )
    async with monitor:
        async with asyncio.timeout(30):
            await monitor.wait()
    assert monitor.stats.frames == 0
    assert monitor.stats.samples == 0


def test_the_ge_simulator_counts_each_value_once_as_the_host_decodes_it() -> None:
    t0 = 1_800_000_000.0
    scenario = _scenario_samples(t0)
    side = ge_s5.GeS5Side()
    host = GeS5Link("mon1", DriverStats())
    assert side.receive(host.start(t0), t0) == []  # displayed values every 5 s from now on
    sent = 0
    decoded: list[Sample] = []
    by_second: dict[float, list[Sample]] = {}
    for s in scenario:
        by_second.setdefault(s.t, []).append(s)
    for t, samples in by_second.items():
        for frame in side.second(samples, t):
            sent += getattr(frame, "samples", 0)
            decoded += host.receive(frame, t + 0.25).samples
    # a record every 5 s with the latest HR, SpO2 and PR, and each cuff determination once;
    # the scenario has a sample of each per second, which the monitor never sent
    assert sent == len(decoded) == len([s for s in decoded if s.valid])
    assert sent < len(scenario) / 4
    cuff = [s for s in decoded if s.param in {Param.NIBP_SYS, Param.NIBP_DIA, Param.NIBP_MEAN}]
    assert len(cuff) == len([s for s in scenario if s.param is Param.NIBP_SYS]) * 3
