"""End to end: simulator -> broker -> `vigil run` (a real subprocess) -> broker -> a subscriber.

The broker is the real one of the `mqtt_broker` fixture (mosquitto when installed). The daemon
and the simulator share a simulated clock (same speed and anchor) so a three-hour scenario's
desaturation arrives in seconds. The expected alarm time is computed here from the SpO2 samples
the subscriber saw, by docs/ALARMS.md "Run semantics", not by the engine under test.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from drivers.mqtt.client import Client as MqttClient
from tests.helpers import BrokerProcess, stop_process, write_bed_config

PREFIX = "vigil/w1/b1"
SPEED = 250.0
# Real seconds: the desaturation comes ~32 simulated minutes in, ~8 s at 250x; the rest is
# room for a loaded machine.
DEADLINE_S = 90.0


def write_config(path: Path, broker: BrokerProcess, *, anchor: float) -> Path:
    return write_bed_config(path, broker, speed=SPEED, anchor=anchor)


def expected_desat_time(spo2: list[tuple[float, float | None]], infusion_t: float) -> float:
    """docs/ALARMS.md: run of SPO2 < 92 (gaps <= 5 s, all valid), active at first sample >= 15 s."""
    start: float | None = None
    last: float | None = None
    for t, v in spo2:
        gap = last is not None and t - last > 5.0
        last = t
        if v is None or not v < 92:
            start = None
            continue
        if start is None or gap:
            start = t
        if t - start >= 15.0 and t >= infusion_t:
            return t
    raise AssertionError("no desaturation in the samples seen")


@pytest.mark.timeout(150)
async def test_simulator_to_daemon_to_ward_desat(
    mqtt_broker: BrokerProcess, tmp_path: Path
) -> None:
    anchor = time.time()
    config = write_config(tmp_path / "bed.toml", mqtt_broker, anchor=anchor)
    host, port = mqtt_broker.host, mqtt_broker.port
    spo2: list[tuple[float, float | None]] = []
    commands: list[dict[str, Any]] = []
    desat: dict[str, Any] | None = None
    infusion_t = math.inf
    statuses: list[str] = []

    async with MqttClient(host, port, identifier="e2e-observer") as observer:
        await observer.subscribe("monitors/mon1/samples", qos=1)
        await observer.subscribe(f"{PREFIX}/#", qos=1)
        daemon = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "monitor.cli", "run", "--config", str(config),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        simulator: asyncio.subprocess.Process | None = None
        try:
            async with asyncio.timeout(DEADLINE_S):
                async for message in observer.messages:
                    topic = str(message.topic)
                    data = (
                        json.loads(message.payload) if isinstance(message.payload, bytes) else None
                    )
                    if topic == f"{PREFIX}/status":
                        statuses.append(data["status"])
                        if data["status"] == "online" and simulator is None:
                            simulator = await asyncio.create_subprocess_exec(
                                sys.executable, "-m", "monitor.cli", "simulate", "mqtt-monitor",
                                "--mqtt", mqtt_broker.url, "--scenario", "desaturation",
                                "--speed", str(SPEED), "--anchor", str(anchor),
                                "--bed", PREFIX, "--seed", "3", "--batch",
                                stdout=asyncio.subprocess.DEVNULL,
                                stderr=asyncio.subprocess.DEVNULL,
                            )  # fmt: skip
                    elif topic == "monitors/mon1/samples":
                        # --batch: one JSON array per instant
                        for doc in data if isinstance(data, list) else [data]:
                            if doc["param"] == "SPO2":
                                spo2.append((doc["t"], doc["value"] if doc["valid"] else None))
                    elif topic == f"{PREFIX}/cmd":
                        commands.append(data)
                    elif topic == f"{PREFIX}/session" and data["phase"] == "infusion":
                        infusion_t = data["session"]["infusion_start_t"]
                    elif topic == f"{PREFIX}/alarms" and data["code"] == "DESAT":
                        desat = data
                        break
        finally:
            if simulator is not None:
                await stop_process(simulator)
            daemon_rc = await stop_process(daemon)
        output = (await daemon.stdout.read()).decode() if daemon.stdout else ""
        # after SIGTERM the retained status is `offline`, published by the daemon itself
        async with asyncio.timeout(10):
            async for message in observer.messages:
                if str(message.topic) == f"{PREFIX}/status":
                    data = json.loads(message.payload)
                    statuses.append(data["status"])
                    if data["status"] == "offline":
                        break

    assert daemon_rc == 0, output
    assert "event=stopped" in output
    assert statuses[0] == "online"
    assert statuses[-1] == "offline"
    assert desat is not None, output
    assert [c["cmd"] for c in commands][:2] == ["open_session", "start_infusion"]
    expected_t = expected_desat_time(spo2, infusion_t)
    assert desat["t"] == expected_t
    assert desat["state"] == "active"
    assert desat["priority"] == "medium"
    assert desat["kind"] == "physiological"
    assert desat["param"] == "SPO2"
    assert desat["limit"] == 92.0
    assert desat["value"] == next(v for t, v in spo2 if t == expected_t)
    assert desat["phase"] == "infusion"
    assert desat["message"]
    assert desat["bed"] == "w1/b1"
    assert desat["alarm_id"]
    assert desat["session_id"]
    assert isinstance(desat["seq"], int)
    assert desat["seq"] >= 1
