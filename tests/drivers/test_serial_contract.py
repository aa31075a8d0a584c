"""The contract every serial driver keeps, run against each with its simulator over a real pty.

Connect, stream, garbage, corrupted and truncated frames, silence, unplug and replug, close:
values arrive intact (in order, each one the scenario's), damage is dropped and counted, a
silent or vanished device raises `DeviceError` (the supervisor's cue) and a replugged one
streams again at the same path. Nothing is faked: the driver opens the pty's slave with
pyserial, the simulator speaks the protocol on the master.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import math
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from drivers.base import DeviceError
from drivers.serialport import LineSettings, SerialDriver
from monitor.clock import SimulatedClock
from monitor.settings import BrokerSettings, DriverSettings, TimeoutSettings
from monitor.vocabulary import NIBP_PARAMS, Param, Sample
from simulators.scenarios import Step, build_scenario
from simulators.serial_monitor import Fault, MonitorSide, SerialMonitor

SPEED = 20.0
QUIET_S = 1.0
SCENARIO = "hypertensive-surge"
SEED = 3


@dataclass(frozen=True)
class Device:
    """A serial protocol under contract: its driver, its simulator, what it reports."""

    kind: str
    driver: str  # module:Class
    side: str  # module:Class; the module has LINE
    params: frozenset[Param]

    def load(self, ref: str) -> Any:
        module, _, name = ref.partition(":")
        return getattr(importlib.import_module(module), name)


DEVICES = [
    Device(
        "masimo",
        "drivers.masimo.driver:MasimoDriver",
        "simulators.masimo:MasimoSide",
        frozenset({Param.SPO2, Param.PR}),
    ),
    Device(
        "ge-s5",
        "drivers.ge_s5.driver:GeS5Driver",
        "simulators.ge_s5:GeS5Side",
        frozenset({Param.HR, Param.SPO2, Param.PR, *NIBP_PARAMS}),
    ),
    Device(
        "intellivue",
        "drivers.intellivue.driver:IntelliVueDriver",
        "simulators.intellivue:IntelliVueSide",
        frozenset({Param.HR, Param.SPO2, Param.PR, *NIBP_PARAMS}),
    ),
]


class ListSink:
    def __init__(self) -> None:
        self.samples: list[Sample] = []
        self.grew = asyncio.Event()

    def put(self, sample: Sample) -> None:
        self.samples.append(sample)
        self.grew.set()

    def of(self, param: Param) -> list[float]:
        return [s.value for s in self.samples if s.param is param]


@dataclass
class Rig:
    device: Device
    clock: SimulatedClock
    monitor: SerialMonitor
    driver: SerialDriver
    link: Path

    def expected(self, param: Param) -> list[float]:
        items = build_scenario(SCENARIO, t0=self.monitor.t0, seed=SEED, device_id="x")
        return [i.value for i in items if not isinstance(i, Step) and i.param is param]


@pytest.fixture(params=DEVICES, ids=lambda d: d.kind)
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rig]:
    device: Device = request.param
    clock = SimulatedClock(speed=SPEED)
    link = tmp_path / f"{device.kind}.pty"
    side: Callable[[], MonitorSide] = device.load(device.side)
    line: LineSettings = importlib.import_module(device.side.partition(":")[0]).LINE
    # the config's own discriminated union picks the settings model of the kind
    settings = TypeAdapter(DriverSettings).validate_python(
        {"kind": device.kind, "device_id": "dev", "port": str(link), "quiet_s": QUIET_S}
    )
    driver = device.load(device.driver)(
        settings, broker=BrokerSettings(), timeouts=TimeoutSettings(), clock=clock
    )
    monitor = SerialMonitor(side, clock=clock, scenario=SCENARIO, line=line, pty=link, seed=SEED)
    async with monitor:
        yield Rig(device, clock, monitor, driver, link)


@contextlib.asynccontextmanager
async def running(
    rig: Rig, sink: ListSink
) -> AsyncIterator[tuple[asyncio.Task[None], asyncio.Event]]:
    up = asyncio.Event()
    task = asyncio.create_task(rig.driver.run(sink, up.set), name="driver-under-test")
    try:
        yield task, up
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, DeviceError):
            await task


async def samples_of(sink: ListSink, params: frozenset[Param], n: int) -> None:
    """Wait (10 s at most) until `sink` has `n` samples of every continuous param in `params`."""
    wanted = params - NIBP_PARAMS
    async with asyncio.timeout(10):
        while any(len(sink.of(p)) < n for p in wanted):
            sink.grew.clear()
            await sink.grew.wait()


def is_subsequence(got: Sequence[float], expected: Sequence[float]) -> bool:
    it = iter(expected)
    return all(any(g == e for e in it) for g in got)


def assert_intact(rig: Rig, sink: ListSink) -> None:
    for param in rig.device.params - NIBP_PARAMS:
        got = [v for v in sink.of(param) if not math.isnan(v)]
        assert got, f"no {param} arrived"
        assert is_subsequence(got, rig.expected(param)), f"{param}: {got[:10]}..."
    for s in sink.samples:
        assert s.device_id == "dev"
        assert s.unit is not None
        assert s.mdc is not None


async def test_connects_and_streams_the_scenarios_values(rig: Rig) -> None:
    sink = ListSink()
    async with running(rig, sink) as (task, up):
        async with asyncio.timeout(5):
            await up.wait()
        await samples_of(sink, rig.device.params, 20)
        assert not task.done()
    assert_intact(rig, sink)
    assert all(s.valid for s in sink.samples)
    assert rig.driver.stats.frames >= 20
    assert not rig.driver.stats.dropped


@pytest.mark.parametrize("fault", [Fault.GARBAGE, Fault.CORRUPT, Fault.TRUNCATE])
async def test_damage_is_dropped_and_counted_and_the_stream_goes_on(rig: Rig, fault: Fault) -> None:
    sink = ListSink()
    async with running(rig, sink) as (task, _):
        await samples_of(sink, rig.device.params, 5)
        for _ in range(3):
            rig.monitor.inject(fault)
            before = len(sink.samples)
            async with asyncio.timeout(5):
                while len(sink.samples) < before + 4:
                    sink.grew.clear()
                    await sink.grew.wait()
        assert not task.done()
    dropped = rig.driver.stats.dropped
    assert sum(dropped.values()) >= 1
    if fault is Fault.GARBAGE:
        # the frames were whole: garbage before one is never counted as a cut frame
        assert "truncated" not in dropped, dict(dropped)
    if fault is Fault.TRUNCATE and rig.device.kind != "ge-s5":
        # a framing that sees a frame begin again before its end tells a cut frame as such
        # (GE S/5's flags split the halves into frames that fail their length or checksum)
        assert "truncated" in dropped, dict(dropped)
    assert_intact(rig, sink)


async def test_silence_past_the_quiet_time_raises_and_a_new_run_streams_again(rig: Rig) -> None:
    sink = ListSink()
    async with running(rig, sink) as (task, _):
        await samples_of(sink, rig.device.params, 3)
        loop = asyncio.get_running_loop()
        silence_ends = loop.time() + QUIET_S * 2.5
        rig.monitor.silence(QUIET_S * 2.5)
        async with asyncio.timeout(QUIET_S * 2):
            with pytest.raises(DeviceError, match="no valid frame"):
                await task
    # the supervisor would retry with backoff; here we wait for the monitor to talk again
    await asyncio.sleep(silence_ends - loop.time())
    sink2 = ListSink()
    async with running(rig, sink2) as (task, up):
        async with asyncio.timeout(QUIET_S * 5):
            await up.wait()
        await samples_of(sink2, rig.device.params, 3)
    assert_intact(rig, sink2)


async def test_unplug_raises_at_once_and_replug_streams_at_the_same_path(rig: Rig) -> None:
    sink = ListSink()
    async with running(rig, sink) as (task, _):
        await samples_of(sink, rig.device.params, 3)
        unplugging = asyncio.create_task(rig.monitor.unplug(1.0))
        async with asyncio.timeout(0.5):
            with pytest.raises(DeviceError):
                await task
    # while unplugged, the port cannot be opened
    with pytest.raises(DeviceError, match="cannot open"):
        async with asyncio.timeout(1):
            await rig.driver.run(ListSink())
    await unplugging
    sink2 = ListSink()
    async with running(rig, sink2) as (_, up):
        async with asyncio.timeout(QUIET_S * 5):
            await up.wait()
        await samples_of(sink2, rig.device.params, 3)
    assert_intact(rig, sink2)


async def test_cancel_closes_the_port(rig: Rig) -> None:
    sink = ListSink()
    async with running(rig, sink) as (task, _):
        await samples_of(sink, rig.device.params, 2)
    assert task.cancelled()
    # closed for real: the port opens again at once and streams
    sink2 = ListSink()
    async with running(rig, sink2) as (_, up):
        async with asyncio.timeout(QUIET_S * 5):
            await up.wait()
