"""`vigil demo`: a whole simulated infusion session, end to end.

Vigil's embedded broker on a free loopback port and the MQTT monitor simulator (`vigil simulate`)
run as child processes, so the three-hour session at 250x gets both cores; the real daemon
(drivers, alarm engine, ward link) and a nurse console run here. The console prints vitals and
alarms as the ward sees them, and acknowledges each high alarm after its first escalation, as a
nurse at the station would. Simulator and daemon share one simulated clock (same speed and
anchor). At the end a summary lists the samples and every alarm event with its time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt

from alarms.policy import load_policy
from drivers.base import DriverStats
from monitor.clock import SimulatedClock
from monitor.console import LineConsole, local_time
from monitor.daemon import Daemon
from monitor.settings import Settings
from simulators.scenarios import SCENARIOS

__all__ = ["demo", "demo_main"]

# A session is ~10 + 40 + 120 min plus margin (~175 simulated minutes); 250x fits it in ~45 s.
DEFAULT_SPEED = 250.0
# Real seconds to wait for the daemon's first connection to the embedded broker.
READY_TIMEOUT_S = 10.0
# Simulated seconds after the scenario's last sample for the last events to arrive.
DRAIN_S = 5.0
NURSE = "demo-nurse"


async def _nurse_console(url: str, console: LineConsole, prefix: str, ready: asyncio.Event) -> None:
    """Subscribe to the ward, print, and acknowledge high alarms after their first escalation."""
    host, port = url.removeprefix("mqtt://").rsplit(":", 1)
    async with aiomqtt.Client(
        host, int(port), identifier=f"vigil-demo-console-{uuid.uuid4().hex[:6]}"
    ) as client:
        await client.subscribe("vigil/#", qos=1)
        ready.set()
        async for message in client.messages:
            topic = str(message.topic)
            payload = message.payload if isinstance(message.payload, bytes) else b""
            console.handle(topic, payload)
            if topic.endswith("/alarms"):
                event: dict[str, Any] = json.loads(payload)
                if event.get("state") == "escalated" and event.get("level") == 1:
                    ack = {
                        "cmd": "ack",
                        "request_id": uuid.uuid4().hex,
                        "user": NURSE,
                        "alarm_id": event["alarm_id"],
                    }
                    await client.publish(f"{prefix}/cmd", json.dumps(ack).encode(), qos=1)


@contextlib.asynccontextmanager
async def _child_broker() -> AsyncIterator[str]:
    """Vigil's embedded broker in a child process; yields its URL once it listens."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor.embedded_broker", "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(READY_TIMEOUT_S):
            line = await proc.stdout.readline()
        if not line.startswith(b"mqtt://"):
            raise RuntimeError("the embedded broker did not start")
        yield line.decode().strip()
    finally:
        await _terminate(proc)


async def _terminate(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def _simulate(url: str, *, scenario: str, clock: SimulatedClock, bed_prefix: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor.cli", "simulate", "mqtt-monitor", "--mqtt", url,
        "--topic", "monitors/mon1/samples", "--device-id", "mon1", "--scenario", scenario,
        "--speed", repr(clock.speed), "--anchor", repr(clock.anchor), "--bed", bed_prefix,
        "--batch",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await proc.wait()
    finally:
        await _terminate(proc)
    if proc.returncode != 0:
        raise RuntimeError(f"the simulator failed (exit {proc.returncode})")


@dataclass
class DemoResult:
    """What the demo saw: the console's log and the daemon's driver counters."""

    console: LineConsole
    received: dict[str, DriverStats]


async def demo(*, speed: float, scenario: str, out: Any = sys.stdout) -> DemoResult:
    """Run the demo; return what the console and the daemon saw."""
    console = LineConsole(out=out, colour=out.isatty(), vitals_every_s=300.0)
    with tempfile.TemporaryDirectory(prefix="vigil-demo-") as tmp:
        async with _child_broker() as url:
            settings = Settings.model_validate(
                {
                    "bed": {"ward": "demo", "bed": "bed1"},
                    # amqtt speaks MQTT 3.1.1; the console prints vitals every few minutes, so the
                    # ward gets one sample per parameter per 30 s (cuff readings all)
                    "broker": {"url": url, "protocol": "3.1.1", "vitals_interval_s": 30.0},
                    "journal": {"path": str(Path(tmp) / "journal.sqlite")},
                    "metrics": {"enabled": False},
                    "drivers": [
                        {"kind": "mqtt", "device_id": "mon1", "topic": "monitors/mon1/samples"}
                    ],
                }
            )
            clock = SimulatedClock(speed=speed)
            ready = asyncio.Event()
            async with asyncio.TaskGroup() as tg:
                nurse = tg.create_task(
                    _nurse_console(url, console, settings.prefix, ready), name="demo.console"
                )
                await ready.wait()
                async with Daemon(settings, load_policy(), clock=clock) as daemon:
                    await daemon.connected(READY_TIMEOUT_S)
                    out.write(
                        f"Vigil demo: scenario {scenario} at {speed:g}x on {url} "
                        "(decision support, not a certified medical device)\n"
                    )
                    await _simulate(url, scenario=scenario, clock=clock, bed_prefix=settings.prefix)
                    await clock.sleep_until(clock.now() + DRAIN_S)
                    daemon.stop()
                    received = {d.device_id: d.stats for d in daemon.drivers}
                nurse.cancel()
    return DemoResult(console, received)


def _summary(result: DemoResult, out: Any) -> None:
    console = result.console
    out.write("\nSummary\n")
    for device_id, stats in result.received.items():
        dropped = ", ".join(f"{k} {n}" for k, n in sorted(stats.dropped.items())) or "none"
        out.write(
            f"  monitor {device_id}: {stats.samples} samples received by the daemon "
            f"in {stats.frames} messages (dropped or flagged: {dropped})\n"
        )
    for view in console.beds.values():
        counts = ", ".join(f"{p} {n}" for p, n in sorted(view.counts.items()))
        out.write(
            f"  bed {view.bed}: {view.counts.total()} samples on the ward's vitals topic "
            f"({counts}); last phase {view.phase}\n"
        )
    out.write(f"  {len(console.alarm_log)} alarm events:\n")
    for a in console.alarm_log:
        extra = f" (level {a.get('level')})" if a.get("level") else ""
        extra += f" by {a.get('user')}" if a.get("user") else ""
        out.write(
            f"    {local_time(float(a['t']))}  {a.get('priority', ''):6} {a.get('code')} "
            f"{a.get('state')}{extra}\n"
        )


def demo_main(args: argparse.Namespace) -> int:
    """`vigil demo [--speed X] [--scenario NAME]`."""
    if args.scenario not in SCENARIOS:
        print(
            f"vigil demo: unknown scenario {args.scenario!r} (known: {', '.join(SCENARIOS)})",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(level=logging.WARNING)
    # amqtt reports every client that connects and drops at once; noise for a demo
    logging.getLogger("amqtt").setLevel(logging.CRITICAL)
    with contextlib.suppress(KeyboardInterrupt):
        result = asyncio.run(demo(speed=args.speed or DEFAULT_SPEED, scenario=args.scenario))
        _summary(result, sys.stdout)
    return 0
