"""`vigil demo`: a whole simulated infusion session, end to end.

Vigil's embedded broker on a free loopback port and the MQTT monitor simulator (`vigil simulate`)
run as child processes, so the three-hour session at 250x gets both cores; the real daemon
(drivers, alarm engine, ward link) and a nurse console run here. The console prints vitals and
alarms as the ward sees them, and acknowledges each high alarm after its first escalation, as a
nurse at the station would. Simulator and daemon share one simulated clock (same speed and
anchor). The central station (`monitor.station`) serves the ward's page on a free loopback port
meanwhile; the demo prints its URL and a one-time password for the user `demo-nurse`. At the end
a summary lists the samples and every alarm event with its time.

Stopping: SIGTERM or SIGINT (Ctrl-C) stops the simulator, the daemon and the broker, prints the
summary of what was seen so far, and exits 0 for SIGTERM (a requested stop) or 130 for SIGINT
(128 + 2, as a shell reports Ctrl-C). The child processes run in their own session, so a Ctrl-C
at the terminal reaches the demo only and the demo stops them in order (the console before the
broker it listens to).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
import signal
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt

from drivers.base import DriverStats
from drivers.mqtt import client as mqtt_client
from drivers.mqtt.client import Client as MqttClient
from kernel.clock import SimulatedClock
from kernel.settings import Endpoint
from kernel.tasks import EXIT_ON_SIGNAL, until_signal
from kernel.vocabulary import AlarmState
from monitor.commands import Ack
from monitor.console import LineConsole, local_time
from monitor.daemon import Daemon
from monitor.session import load_bed_policy
from monitor.settings import Settings
from monitor.station.server import Station, hash_password
from monitor.station.settings import StationConfig
from monitor.wire import decode_alarm_event, encode_command
from simulators.scenarios import SCENARIOS

__all__ = ["DemoResult", "demo", "demo_main", "summary"]

# A session is ~10 + 40 + 120 min plus margin (~175 simulated minutes); 250x fits it in ~45 s.
DEFAULT_SPEED = 250.0
# Real seconds to wait for the daemon's first connection to the embedded broker.
READY_TIMEOUT_S = 10.0
# Simulated seconds after the scenario's last sample for the last events to arrive.
DRAIN_S = 5.0
NURSE = "demo-nurse"
# The ward gets one sample per parameter per this many simulated seconds (cuff readings all):
# the console prints vitals every few minutes, so more would only load the broker.
VITALS_INTERVAL_S = 30.0
# Exit status after a stop signal (module docstring).


async def _nurse_console(url: str, console: LineConsole, prefix: str, ready: asyncio.Event) -> None:
    """Subscribe to the ward, print, and acknowledge high alarms after their first escalation."""
    host, port = url.removeprefix("mqtt://").rsplit(":", 1)
    identifier = f"vigil-demo-console-{uuid.uuid4().hex[:6]}"

    def build(protocol: aiomqtt.ProtocolVersion, broker: Endpoint) -> aiomqtt.Client:
        return MqttClient(broker.host, broker.port, identifier=identifier, protocol=protocol)

    # the embedded broker speaks 3.1.1 only: no need to ask for 5 first
    async with mqtt_client.connect("3.1.1", (Endpoint(host, int(port)),), build) as client:
        await client.subscribe(f"{console.root}/#", qos=1)
        ready.set()
        async for message in client.messages:
            topic = str(message.topic)
            payload = message.payload if isinstance(message.payload, bytes) else b""
            console.handle(topic, payload)
            if topic.endswith("/alarms"):
                event = decode_alarm_event(payload)
                if event.state is AlarmState.ESCALATED and event.level == 1:
                    ack = Ack(
                        cmd="ack", request_id=uuid.uuid4().hex, user=NURSE, alarm_id=event.alarm_id
                    )
                    await client.publish(f"{prefix}/cmd", encode_command(ack), qos=1)


@contextlib.asynccontextmanager
async def _child_broker() -> AsyncIterator[str]:
    """Vigil's embedded broker in a child process; yields its URL once it listens."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor.embedded_broker", "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C is the demo's to handle (module docstring)
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
        "--batch", "--mqtt-version", "3.1.1",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C is the demo's to handle (module docstring)
    )  # fmt: skip
    try:
        await proc.wait()
    finally:
        await _terminate(proc)
    if proc.returncode != 0:
        raise RuntimeError(f"the simulator failed (exit {proc.returncode})")


@dataclass
class DemoResult:
    """What the demo saw: the console's log and the daemon's driver counters.

    Filled in as the demo runs, so a demo stopped early still has what it saw so far.
    """

    console: LineConsole
    received: dict[str, DriverStats]
    vitals_interval_s: float = VITALS_INTERVAL_S


async def demo(
    *, speed: float, scenario: str, out: Any = sys.stdout, result: DemoResult | None = None
) -> DemoResult:
    """Run the demo; return what the console and the daemon saw (`result`, if given)."""
    if result is None:
        result = DemoResult(LineConsole(out=out, colour=out.isatty(), vitals_every_s=300.0), {})
    console = result.console
    with tempfile.TemporaryDirectory(prefix="vigil-demo-") as tmp:
        async with _child_broker() as url:
            # the title first: every line after it is the session
            out.write(
                f"Vigil demo: scenario {scenario} at {speed:g}x on {url} "
                "(decision support, not a certified medical device)\n"
            )
            out.flush()
            settings = Settings.model_validate(
                {
                    "bed": {"ward": "demo", "bed": "bed1"},
                    # amqtt speaks MQTT 3.1.1 only
                    "broker": {
                        "url": url,
                        "protocol": "3.1.1",
                        "vitals_interval_s": result.vitals_interval_s,
                    },
                    "journal": {"path": str(Path(tmp) / "journal.sqlite")},
                    "metrics": {"enabled": False},
                    "drivers": [
                        {"kind": "mqtt", "device_id": "mon1", "topic": "monitors/mon1/samples"}
                    ],
                }
            )
            clock = SimulatedClock(speed=speed)
            ready = asyncio.Event()
            password = secrets.token_urlsafe(9)
            station_config = StationConfig.model_validate(
                {
                    "station": {
                        "listen": "127.0.0.1:0",
                        "database": str(Path(tmp) / "station.sqlite"),
                    },
                    "broker": {"url": url, "protocol": "3.1.1"},
                    "users": [
                        {
                            "name": NURSE,
                            "role": "clinician",
                            "password_hash": hash_password(password),
                        }
                    ],
                }
            )
            async with Station(station_config) as station, asyncio.TaskGroup() as tg:
                out.write(f"Central station: {station.url} (user {NURSE}, password {password})\n")
                out.flush()
                nurse = tg.create_task(
                    _nurse_console(url, console, settings.prefix, ready), name="demo.console"
                )
                await ready.wait()
                async with Daemon(settings, load_bed_policy(), clock=clock) as daemon:
                    # the counters are live objects: a stopped demo reports them as they stand
                    result.received = {d.device_id: d.stats for d in daemon.drivers}
                    await daemon.connected(READY_TIMEOUT_S)
                    await _simulate(url, scenario=scenario, clock=clock, bed_prefix=settings.prefix)
                    await clock.sleep_until(clock.now() + DRAIN_S)
                    daemon.stop()
                nurse.cancel()
    return result


def summary(result: DemoResult, out: Any) -> None:
    """The end of the demo: samples in, samples out to the ward (and why fewer), alarm events."""
    console = result.console
    out.write("\nSummary\n")
    for device_id, stats in result.received.items():
        dropped = ", ".join(f"{k} {n}" for k, n in sorted(stats.dropped.items())) or "none"
        out.write(
            f"  monitor {device_id}: {stats.samples} samples received by the daemon in "
            f"{stats.frames} messages (the simulator sends each second's samples in one "
            f"message; dropped or flagged: {dropped})\n"
        )
    for view in console.beds.values():
        counts = ", ".join(f"{p} {n}" for p, n in sorted(view.counts.items()))
        out.write(
            f"  bed {view.bed}: {view.counts.total()} samples on the ward's vitals topic "
            f"({counts or 'none'}); fewer than received, because the bed forwards at most one "
            f"sample per parameter per {result.vitals_interval_s:g} s of bed time "
            "(broker.vitals_interval_s) and every cuff determination, while the alarm engine "
            f"sees every sample; last phase {view.phase}\n"
        )
    if not console.alarm_log:
        out.write("  no alarm events: nothing in this session raised an alarm\n")
        return
    out.write(f"  {len(console.alarm_log)} alarm events:\n")
    for a in console.alarm_log:
        extra = f" level {a.level}" if a.level else ""
        extra += f" by {a.user}" if a.user else ""
        out.write(f"    {local_time(a.t)}  {a.priority.value:6} {a.code} {a.state.value}{extra}\n")


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
    out = sys.stdout
    result = DemoResult(LineConsole(out=out, colour=out.isatty(), vitals_every_s=300.0), {})
    work = demo(speed=args.speed or DEFAULT_SPEED, scenario=args.scenario, out=out, result=result)
    try:
        stopped_by = asyncio.run(until_signal(work))
    except KeyboardInterrupt:
        # Ctrl-C before the signal handlers were installed: nothing was started yet
        return EXIT_ON_SIGNAL[signal.SIGINT]
    if stopped_by is not None:
        print(f"vigil demo: stopped by {stopped_by.name}", file=sys.stderr)
    summary(result, out)
    return EXIT_ON_SIGNAL[stopped_by] if stopped_by is not None else 0
