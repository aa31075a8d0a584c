"""End to end: simulator -> pty, TCP or UDP -> `vigil run` (a real subprocess) -> broker.

For each byte-stream protocol, the device simulator plays a scenario on a pseudo-terminal (or,
for a network monitor, over a TCP connection to the daemon's listening driver, or a UDP port the
daemon's driver polls, IntelliVue on the LAN), the daemon's driver reads it, and the scenario's
designed alarm reaches a ward subscriber on the real broker (`mqtt_broker` fixture). Then the
cable is pulled: the daemon raises `DEVICE_DISCONNECTED` (medium, technical), and clears it once
the replugged monitor talks again. The test plays the nurse: the session steps go to `…/cmd` at
their scenario times.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from drivers.mqtt.client import Client as MqttClient
from drivers.registry import spec_for
from drivers.spec import DeviceSpec, load
from kernel.clock import SimulatedClock
from kernel.vocabulary import SessionEvent, Step
from simulators.intellivue_lan import IntelliVueLanMonitor
from simulators.mqtt_monitor import session_command
from simulators.scenarios import build_scenario
from simulators.serial_monitor import SerialMonitor
from simulators.tcp_monitor import TcpMonitor
from tests.helpers import BrokerProcess, free_port, stop_process, write_bed_config

SPEED = 250.0
# Real seconds before the scenario starts: the daemon starts and opens the port meanwhile.
LEAD_S = 3.0


@dataclass(frozen=True)
class Case:
    kind: str
    scenario: str
    alarm: str  # the scenario's designed alarm this device's parameters produce

    @property
    def spec(self) -> DeviceSpec:
        return spec_for(self.kind)


CASES = [
    Case("masimo", "desaturation", "DESAT_CRITICAL"),
    Case("ge-s5", "hypertensive-surge", "SYMPATHOMIMETIC_SURGE"),
    Case("intellivue", "hypertensive-surge", "SYMPATHOMIMETIC_SURGE"),
    Case("intellivue-lan", "hypertensive-surge", "SYMPATHOMIMETIC_SURGE"),
    Case("ivy-450c", "hypertensive-surge", "SYMPATHOMIMETIC_SURGE"),
    Case("nellcor", "desaturation", "DESAT_CRITICAL"),
    Case("mindray-hl7", "hypertensive-surge", "SYMPATHOMIMETIC_SURGE"),
]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(
    path: Path,
    broker: BrokerProcess,
    case: Case,
    where: str,
    anchor: float,
    bed: str,
    speed: float,
) -> Path:
    driver = f'kind = "{case.kind}"\ndevice_id = "dev1"\n{where}'
    extra = "[timeouts]\nbackoff_max_s = 1.0\n"
    return write_bed_config(
        path, broker, driver=driver, speed=speed, anchor=anchor, extra=extra, bed=bed
    )


async def nurse(
    client: aiomqtt.Client, clock: SimulatedClock, steps: list[Step], prefix: str
) -> None:
    """Send each session step as a command when the scenario reaches it."""
    for step in steps:
        if step.event is SessionEvent.DISCHARGE:
            return
        await clock.sleep_until(step.t)
        await client.publish(f"{prefix}/cmd", json.dumps(session_command(step.event)), qos=1)


async def play(
    case: Case, broker: BrokerProcess, folder: Path, bed: str, speed: float = SPEED
) -> None:
    """Run `case` on bed w1/`bed` and check its designed alarm and its unplug (module docstring).

    `folder` (which exists) holds the bed's config, journal and pty.
    """
    prefix = f"vigil/w1/{bed}"
    anchor = time.time()
    clock = SimulatedClock(speed=speed, anchor=anchor)
    t0 = clock.now() + LEAD_S * speed
    assert case.spec.simulator is not None
    side = load(case.spec.simulator)
    monitor: SerialMonitor | IntelliVueLanMonitor
    if case.spec.transport == "udp":
        # the monitor serves a UDP port; a pulled cable is silence, found by the quiet time
        port = free_udp_port()
        where = f'host = "127.0.0.1"\nudp_port = {port}\nquiet_s = 1.0\n'
        monitor = IntelliVueLanMonitor(
            clock=clock, scenario=case.scenario, host="127.0.0.1", port=port, seed=3, t0=t0
        )
    elif case.spec.transport == "tcp":
        # the daemon's driver listens; the monitor connects to it, again after the unplug
        port = free_port()
        where = f'mode = "listen"\nhost = "127.0.0.1"\nport = {port}\n'
        monitor = TcpMonitor(
            side, clock=clock, scenario=case.scenario, host="127.0.0.1", port=port, seed=3, t0=t0
        )
    else:
        link = folder / "monitor.pty"
        where = f'port = "{link}"\n'
        monitor = SerialMonitor(
            side,
            clock=clock,
            scenario=case.scenario,
            line=case.spec.serial_line,
            pty=link,
            seed=3,
            t0=t0,
        )
    steps = [
        i
        for i in build_scenario(case.scenario, t0=t0, seed=3, device_id="x")
        if isinstance(i, Step)
    ]
    config = write_config(folder / "bed.toml", broker, case, where, anchor, bed, speed)
    alarms: list[dict[str, Any]] = []
    async with (
        monitor,
        MqttClient(broker.host, broker.port, identifier=f"e2e-{bed}") as ward,
    ):
        await ward.subscribe(f"{prefix}/alarms", qos=1)
        daemon = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "monitor.cli", "run", "--config", str(config),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        # the nurse starts once the bed listens for commands (a loaded machine starts it late;
        # a step sent late still opens the session, a step sent to nobody is lost)
        async with MqttClient(broker.host, broker.port, identifier=f"e2e-{bed}-status") as probe:
            await probe.subscribe(f"{prefix}/status", qos=1)
            async with asyncio.timeout(30):
                async for message in probe.messages:
                    assert isinstance(message.payload, bytes)
                    if json.loads(message.payload)["status"] == "online":
                        break
        playing = asyncio.create_task(nurse(ward, clock, steps, prefix), name=f"nurse-{bed}")
        unplugged: asyncio.Task[None] | None = None
        try:
            async with asyncio.timeout(90):
                async for message in ward.messages:
                    assert isinstance(message.payload, bytes)
                    event = json.loads(message.payload)
                    alarms.append(event)
                    if event["code"] == case.alarm and unplugged is None:
                        unplugged = asyncio.create_task(monitor.unplug(2.0), name=f"unplug-{bed}")
                    # a loaded machine may start the daemon late: a disconnection before the
                    # designed alarm is start-up, the one that counts is the unplug's
                    if (
                        unplugged is not None
                        and event["code"] == "DEVICE_DISCONNECTED"
                        and event["state"] == "cleared"
                    ):
                        break
        finally:
            playing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await playing
            if unplugged is not None:
                await unplugged
            rc = await stop_process(daemon)
        output = (await daemon.stdout.read()).decode() if daemon.stdout else ""

    assert rc == 0, output
    codes = [(a["code"], a["state"]) for a in alarms]
    assert (case.alarm, "active") in codes, (case.kind, codes)
    designed = next(a for a in alarms if a["code"] == case.alarm)
    assert designed["phase"] == "infusion", (case.kind, codes)
    assert designed["bed"] == f"w1/{bed}"
    disconnected = [
        a for a in alarms if a["code"] == "DEVICE_DISCONNECTED" and a["seq"] > designed["seq"]
    ]
    assert [a["state"] for a in disconnected] == ["active", "cleared"], (case.kind, codes)
    assert disconnected[0]["priority"] == "medium"
    assert disconnected[0]["kind"] == "technical"
    assert disconnected[0]["param"] == "dev1"
    assert "dev1" in disconnected[0]["message"]
    # the unplug came after the designed alarm, and the daemon was told at once
    assert disconnected[1]["t"] > disconnected[0]["t"]


@pytest.mark.broker_incidental
@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.kind)
async def test_serial_monitor_to_ward_and_unplug(
    case: Case, mqtt_broker: BrokerProcess, tmp_path: Path
) -> None:
    await play(case, mqtt_broker, tmp_path, "b1")
