"""`vigil simulate`: usage errors, the clock it picks, and stopping a live run by signal."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import sys
from typing import TYPE_CHECKING, Any

import pytest

from drivers.masimo.driver import MasimoDriver
from drivers.masimo.spec import MasimoSettings
from drivers.mqtt.client import Client as MqttClient
from kernel.clock import RealClock, SimulatedClock, make_clock
from kernel.settings import BrokerSettings, TimeoutSettings
from monitor.cli import build_parser
from simulators.cli import DEVICES, simulate_main
from simulators.mqtt_monitor import parse_broker_url
from tests.helpers import ListSink, free_port

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

TOPIC = "monitors/sim/samples"
BED = "vigil/w1/b3"


def _simulate(*argv: str) -> int:
    return simulate_main(build_parser().parse_args(["simulate", *argv]))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("pager", "--mqtt", "mqtt://127.0.0.1"), "unknown device 'pager' (known: mqtt-monitor,"),
        (("masimo", "--mqtt", "mqtt://h"), "serial device: give --serial PORT or --pty PATH"),
        (("masimo", "--serial", "/dev/ttyS0", "--fault", "unplug"), "--fault unplug needs --pty"),
        (("mqtt-monitor", "--mqtt", "mqtt://h", "--fault", "garbage"), "serial monitors only"),
        (("mqtt-monitor", "--scenario", "x", "--mqtt", "mqtt://h"), "unknown scenario 'x'"),
        (("mqtt-monitor", "--serial", "/dev/ttyUSB0"), "publishes over MQTT: give --mqtt URL"),
        (("mqtt-monitor", "--mqtt", "mqtts://h:8883"), "broker URL must be mqtt://"),
        (("mindray-hl7", "--serial", "/dev/ttyS0"), "network monitor: give --tcp HOST:PORT"),
        (("mindray-hl7", "--tcp", "127.0.0.1:99999"), "network monitor: give --tcp HOST:PORT"),
    ],
)
def test_usage_errors_exit_2_with_a_message(
    argv: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _simulate(*argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("vigil simulate: ")
    assert message in err
    assert err.count("\n") == 1


def test_unreachable_broker_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"mqtt://127.0.0.1:{free_port()}"
    assert _simulate("mqtt-monitor", "--mqtt", url, "--speed", "50") == 1
    lines = capsys.readouterr().err.splitlines()
    assert "playing normal-session" in lines[0]
    assert "speed 50x" in lines[0]
    assert lines[1].startswith(f"vigil simulate: broker {url}: ")
    assert lines[2] == "vigil simulate: failed: 0 samples and 0 commands sent"


def test_every_device_names_its_transport() -> None:
    assert DEVICES["mqtt-monitor"].transport == "mqtt"
    assert all(d.description for d in DEVICES.values())


def test_clock_real_at_speed_1_simulated_otherwise() -> None:
    assert isinstance(make_clock(1.0, None), RealClock)
    fast = make_clock(60.0, None)
    assert isinstance(fast, SimulatedClock)
    assert fast.speed == 60.0
    shared = make_clock(1.0, 1767225600.0)
    assert isinstance(shared, SimulatedClock)
    assert shared.anchor == 1767225600.0


@contextlib.asynccontextmanager
async def _subscribed(url: str) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
    """Every JSON payload on the sample and command topics, in a queue."""
    broker = parse_broker_url(url)
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    async with MqttClient(broker.host, broker.port) as client:
        await client.subscribe(TOPIC, qos=1)
        await client.subscribe(f"{BED}/cmd", qos=1)

        async def collect() -> None:
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                queue.put_nowait(json.loads(message.payload))

        task = asyncio.create_task(collect())
        try:
            yield queue
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
async def test_a_signal_stops_a_live_run_cleanly(
    mqtt_broker_url: str, sig: signal.Signals, status: int
) -> None:
    async with _subscribed(mqtt_broker_url) as received:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "monitor.cli", "simulate", "mqtt-monitor"),
            *("--mqtt", mqtt_broker_url, "--topic", TOPIC, "--bed", BED, "--device-id", "sim"),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(20):
                # Real time (speed 1): the session opens, the first samples go out, then it
                # would wait a second for the next ones.
                first = await received.get()
                assert first["cmd"] == "open_session"
                assert (await received.get())["device_id"] == "sim"
                proc.send_signal(sig)
                _, err = await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert proc.returncode == status
    text = err.decode()
    assert "Traceback" not in text
    lines = text.splitlines()
    assert len(lines) == 2, text
    assert "speed 1x" in lines[0]
    assert f"session commands to {BED}/cmd" in lines[0]
    assert re.fullmatch(
        rf"vigil simulate: stopped by {sig.name}: \d+ samples and [01] commands sent", lines[1]
    )


async def test_a_serial_simulator_on_a_pty_with_faults_feeds_a_real_driver(
    tmp_path: Path,
) -> None:
    link = tmp_path / "oximeter"
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "monitor.cli", "simulate", "masimo", "--pty", str(link)),
        *("--speed", "20", "--fault", "garbage", "--fault", "corrupt", "--fault-every", "0.2"),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    try:
        async with asyncio.timeout(10):
            await proc.stderr.readline()  # what plays where
            ready = (await proc.stderr.readline()).decode()
        assert ready.strip() == f'vigil simulate: pty ready: configure port = "{link}"'
        settings = MasimoSettings(kind="masimo", device_id="ox", port=str(link))
        driver = MasimoDriver(
            settings, broker=BrokerSettings(), timeouts=TimeoutSettings(), clock=RealClock()
        )
        sink = ListSink()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.5):
                await driver.run(sink)
        proc.send_signal(signal.SIGTERM)
        _, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0
    assert {s.param.value for s in sink.samples} == {"SPO2", "PR"}
    assert driver.stats.frames >= 30  # 20 lines a real second
    assert sum(driver.stats.dropped.values()) >= 2
    assert "fault: garbage" in err.decode()
    assert "fault: corrupt" in err.decode()
    assert not link.exists()  # the simulator takes its link away when it stops
