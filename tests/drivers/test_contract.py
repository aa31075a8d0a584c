"""The contract every driver keeps, run against each registered device with its simulator.

The devices come from the registry (`drivers.registry.SPECS`), each with what its spec says the
suite should expect (`DeviceSpec.contract`). Serial devices: connect, stream, garbage, corrupted
and truncated frames, silence, unplug and replug, close, over a real pty: values arrive intact
(in order, each one the scenario's), damage is dropped and counted, a silent or vanished device
raises `DeviceError` (the supervisor's cue) and a replugged one streams again at the same path.
Nothing is faked: the driver opens the pty's slave with pyserial, the simulator speaks the
protocol on the master. The MQTT monitor: connect, stream intact, damaged payloads dropped and
counted, close, through a real broker (a silent publisher is the supervisor's business, not
the driver's; a lost broker is tests/drivers/mqtt/test_mqtt_driver.py's).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from drivers.base import DeviceError, Driver
from drivers.mqtt.client import Client as MqttClient
from drivers.registry import SPECS, DriverSettings, create_driver
from drivers.spec import DeviceSpec, load
from kernel.clock import SimulatedClock
from kernel.settings import BrokerSettings, TimeoutSettings
from kernel.vocabulary import NIBP_PARAMS, Param, Step
from simulators.intellivue_lan import IntelliVueLanMonitor
from simulators.mqtt_monitor import run_mqtt_monitor
from simulators.scenarios import build_scenario
from simulators.serial_monitor import Fault, MonitorSide, SerialMonitor
from simulators.tcp_monitor import TcpMonitor
from tests.helpers import ListSink, free_port

SPEED = 20.0
QUIET_S = 1.0
SCENARIO = "hypertensive-surge"
SEED = 3


# the byte-stream devices: serial ones over a pty, network ones over loopback TCP, LAN ones
# over loopback UDP
STREAM = [s for s in SPECS if s.transport in {"serial", "tcp", "udp"}]
# every one with its default settings, then with each of its contract's variants
STREAM_RUNS = [
    (s, variant) for s in STREAM for variant in ((), *s.contract.variants)
]  # fmt: skip


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def expected_values(t0: float, param: Param, seed: int = SEED) -> list[float]:
    items = build_scenario(SCENARIO, t0=t0, seed=seed, device_id="x")
    return [i.value for i in items if not isinstance(i, Step) and i.param is param]


@dataclass
class Rig:
    device: DeviceSpec
    clock: SimulatedClock
    monitor: SerialMonitor
    driver: Driver

    def expected(self, param: Param) -> list[float]:
        return expected_values(self.monitor.t0, param)


def make_driver(spec: DeviceSpec, clock: SimulatedClock, **fields: Any) -> Driver:
    # the config's own discriminated union picks the settings model of the kind, and the
    # registry the driver, as the daemon's are
    settings = TypeAdapter(DriverSettings).validate_python(
        {"kind": spec.kind, "device_id": "dev", **fields}
    )
    return create_driver(settings, broker=BrokerSettings(), timeouts=TimeoutSettings(), clock=clock)


@pytest.fixture(params=STREAM_RUNS, ids=lambda r: "-".join((r[0].kind, *(v for _, v in r[1]))))
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rig]:
    spec: DeviceSpec = request.param[0]
    variant: dict[str, str] = dict(request.param[1])
    clock = SimulatedClock(speed=SPEED)
    assert spec.simulator is not None
    side: Callable[[], MonitorSide] = load(spec.simulator)
    monitor: SerialMonitor
    if spec.transport == "udp":
        # the monitor serves a UDP port the driver polls (IntelliVue on the LAN)
        port = free_udp_port()
        driver = make_driver(
            spec, clock, host="127.0.0.1", udp_port=port, quiet_s=QUIET_S, **variant
        )
        monitor = IntelliVueLanMonitor(
            clock=clock, scenario=SCENARIO, host="127.0.0.1", port=port, seed=SEED, side=side
        )
    elif spec.transport == "tcp":
        # the driver listens, the monitor connects to it (as a Mindray monitor's HL7 output)
        port = free_port()
        driver = make_driver(
            spec,
            clock,
            mode="listen",
            host="127.0.0.1",
            port=port,
            quiet_s=QUIET_S,
            **variant,
        )
        monitor = TcpMonitor(
            side, clock=clock, scenario=SCENARIO, host="127.0.0.1", port=port, seed=SEED
        )
    else:
        link = tmp_path / f"{spec.kind}.pty"
        driver = make_driver(spec, clock, port=str(link), quiet_s=QUIET_S, **variant)
        monitor = SerialMonitor(
            side, clock=clock, scenario=SCENARIO, line=spec.serial_line, pty=link, seed=SEED
        )
    async with monitor:
        yield Rig(spec, clock, monitor, driver)


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
    assert_values_intact(rig.device, sink, rig.expected)


def assert_values_intact(
    spec: DeviceSpec, sink: ListSink, expected: Callable[[Param], list[float]]
) -> None:
    for param in spec.contract.params - NIBP_PARAMS:
        got = [v for v in sink.of(param) if not math.isnan(v)]
        assert got, f"no {param} arrived"
        assert is_subsequence(got, expected(param)), f"{param}: {got[:10]}..."
    for s in sink.samples:
        assert s.device_id == "dev"
        assert s.unit is not None
        assert s.mdc is not None


async def test_connects_and_streams_the_scenarios_values(rig: Rig) -> None:
    sink = ListSink()
    async with running(rig, sink) as (task, up):
        async with asyncio.timeout(5):
            await up.wait()
        await samples_of(sink, rig.device.contract.params, 20)
        assert not task.done()
    assert_intact(rig, sink)
    assert all(s.valid for s in sink.samples)
    assert rig.driver.stats.frames >= 20
    assert not rig.driver.stats.dropped


@pytest.mark.parametrize("fault", [Fault.GARBAGE, Fault.CORRUPT, Fault.TRUNCATE])
async def test_damage_is_dropped_and_counted_and_the_stream_goes_on(rig: Rig, fault: Fault) -> None:
    sink = ListSink()
    async with running(rig, sink) as (task, _):
        await samples_of(sink, rig.device.contract.params, 5)
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
    if fault is Fault.TRUNCATE and rig.device.contract.names_cut_frames:
        # a framing that sees a frame begin again before its end tells a cut frame as such
        assert "truncated" in dropped, dict(dropped)
    assert_intact(rig, sink)


async def assert_streams_again(rig: Rig) -> None:
    """A new run of the driver is up within five quiet times and streams intact."""
    sink = ListSink()
    async with running(rig, sink) as (_, up):
        async with asyncio.timeout(QUIET_S * 5):
            await up.wait()
        await samples_of(sink, rig.device.contract.params, 3)
    assert_intact(rig, sink)


async def test_silence_past_the_quiet_time_raises_and_a_new_run_streams_again(rig: Rig) -> None:
    sink = ListSink()
    async with running(rig, sink) as (task, _):
        await samples_of(sink, rig.device.contract.params, 3)
        loop = asyncio.get_running_loop()
        silence_ends = loop.time() + QUIET_S * 2.5
        rig.monitor.silence(QUIET_S * 2.5)
        async with asyncio.timeout(QUIET_S * 2):
            with pytest.raises(DeviceError, match="no valid frame"):
                await task
    # the supervisor would retry with backoff; here we wait for the monitor to talk again
    await asyncio.sleep(silence_ends - loop.time())
    await assert_streams_again(rig)


async def test_unplug_raises_at_once_and_replug_streams_at_the_same_path(rig: Rig) -> None:
    sink = ListSink()
    async with running(rig, sink) as (task, _):
        await samples_of(sink, rig.device.contract.params, 3)
        # at once, except over UDP, which has no connection to lose: its quiet time tells, so
        # the cable stays out long enough for that and for a second run to find nothing
        udp = rig.device.transport == "udp"
        unplugging = asyncio.create_task(rig.monitor.unplug(QUIET_S * 3.5 if udp else 1.0))
        async with asyncio.timeout(QUIET_S * 1.5 if udp else 0.5):
            with pytest.raises(DeviceError):
                await task
    # while unplugged, the port cannot be opened (a listening driver waits its quiet time; a
    # UDP one hears nothing for it)
    missing = {"tcp": "no monitor connected", "udp": "no valid frame"}.get(
        rig.device.transport, "cannot open"
    )
    with pytest.raises(DeviceError, match=missing):
        async with asyncio.timeout(QUIET_S * 2):
            await rig.driver.run(ListSink())
    await unplugging
    await assert_streams_again(rig)


async def test_cancel_closes_the_port(rig: Rig) -> None:
    sink = ListSink()
    async with running(rig, sink) as (task, _):
        await samples_of(sink, rig.device.contract.params, 2)
    assert task.cancelled()
    # closed for real: the port opens again at once and streams
    sink2 = ListSink()
    async with running(rig, sink2) as (_, up):
        async with asyncio.timeout(QUIET_S * 5):
            await up.wait()


# ------------------------------------------------------------------------- the MQTT monitor

MQTT = next(s for s in SPECS if s.transport == "mqtt")
TOPIC = "monitors/dev/samples"


@contextlib.asynccontextmanager
async def mqtt_rig(url: str) -> AsyncIterator[tuple[Driver, ListSink, float]]:
    """The MQTT driver subscribed to the simulator's topic, and the simulator playing.

    Yields once the driver is subscribed, with the scenario's start time.
    """
    clock = SimulatedClock(speed=SPEED)
    driver = make_driver(MQTT, clock, topic=TOPIC, broker_url=url)
    sink = ListSink()
    async with running_driver(driver, sink) as up:
        async with asyncio.timeout(10):
            await up.wait()
        t0 = clock.now()
        play = asyncio.create_task(
            run_mqtt_monitor(
                url=url, topic=TOPIC, device_id="dev", scenario=SCENARIO, clock=clock, seed=SEED,
                t0=t0,
            ),
            name="mqtt-monitor-under-test",
        )  # fmt: skip
        try:
            yield driver, sink, t0
        finally:
            play.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await play


@contextlib.asynccontextmanager
async def running_driver(driver: Driver, sink: ListSink) -> AsyncIterator[asyncio.Event]:
    up = asyncio.Event()
    task = asyncio.create_task(driver.run(sink, up.set), name="driver-under-test")
    try:
        yield up
        assert not task.done()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert task.cancelled()


@pytest.mark.timeout(30)
async def test_mqtt_monitor_streams_intact_and_damage_is_dropped_and_counted(
    mqtt_broker_url: str,
) -> None:
    good = {"t": 1.0, "param": "HR", "value": 60, "valid": True, "device_id": "dev"}
    whole = json.dumps(good).encode()
    damaged = [
        b"\x8f\x00\xffgarbage",  # garbage
        whole.replace(b'"HR"', b'"H\x00R"'),  # corrupt: a line hit inside a string
        whole[: len(whole) // 2],  # truncated
    ]
    async with mqtt_rig(mqtt_broker_url) as (driver, sink, t0):
        await samples_of(sink, MQTT.contract.params, 5)
        async with MqttClient("127.0.0.1", int(mqtt_broker_url.rsplit(":", 1)[1])) as pub:
            for payload in damaged:
                await pub.publish(TOPIC, payload, qos=1)
        await samples_of(sink, MQTT.contract.params, 15)
    dropped = driver.stats.dropped
    # each damaged payload is counted once, under the codec's reason; none reached the sink
    assert sum(n for r, n in dropped.items() if r != "out_of_range") == len(damaged), dict(dropped)
    assert_values_intact(MQTT, sink, lambda p: expected_values(t0, p))
    assert all(s.device_id == "dev" for s in sink.samples)
