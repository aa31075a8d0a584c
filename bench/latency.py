"""Alarm-path latency of `vigil run` against the bare broker round trip, measured in one run.

    python bench/latency.py [--trials N] [--broker mosquitto|amqtt]

What it does:
1. Starts a real broker on a free loopback port (mosquitto via `tests.helpers.BrokerProcess`;
   the embedded amqtt broker when mosquitto is not installed or `--broker amqtt`).
2. Baseline: a publisher client and a subscriber client (aiomqtt, MQTT 5 on mosquitto, 3.1.1 on
   amqtt, like the daemon's ward link) on one broker; one small QoS 1 message per trial, timed from
   just before `publish` to its arrival at the subscriber.
3. Alarm path: `vigil run` as a real subprocess, with a one-rule policy (HRE >= 140, zero delay,
   non-latching, `clear_after_s = 0`). Each trial publishes an HR 150 Sample JSON on the monitor
   topic (QoS 1) and times until the `active` event arrives on `<prefix>/alarms` at a subscriber
   holding the nurse console's subscriptions (`vigil watch`: every bed's status, session,
   vitals, alarms, active alarms and command results); then an HR 70
   sample, timed separately until its `cleared` event. Each step also waits for the sample's echo
   on `<prefix>/vitals`, which the daemon publishes after the event and the retained state, so
   every trial starts with the daemon idle.
4. Stops the daemon with SIGTERM (its exit status must be 0) and then the broker.

Both measurements use the same clients and the same arrival stamp (taken when the subscriber's
message iterator yields), so their overheads cancel in the ratios.

Reading the ratios: the alarm path crosses the broker twice (monitor -> daemon on the monitor
topic, daemon -> ward on `<prefix>/alarms`), so a ratio near 2 is the floor; anything above it is
the daemon's own work (decode, queue hand-off, alarm core, event JSON, the QoS 1 publish).
A p50 near 40 ms is not the daemon's work but Nagle's algorithm meeting delayed ACKs: the
alarm is written right after a QoS 0 vitals publish whose TCP ACK the peer delays, on the daemon's
client sockets and on mosquitto's (TCP_NODELAY is off in paho and by default in mosquitto, see
`set_tcp_nodelay`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiomqtt
import numpy as np
from alarm_policy import instant_alarm_policy  # bench/alarm_policy.py, beside this script

from alarms.policy import load_policy
from drivers.mqtt.client import Client as MqttClient
from kernel.vocabulary import AlarmEvent, AlarmKind, AlarmState, Phase, Priority
from monitor.daemon import Daemon
from monitor.settings import Settings, load_settings
from monitor.ward import PIPELINE
from monitor.watch.app import subscriptions
from tests.helpers import BrokerImplementation, BrokerProcess, free_port, mosquitto_path

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

WARD, BED = "bench", "b1"
PREFIX = f"vigil/{WARD}/{BED}"
MONITOR_TOPIC = "monitors/bench/samples"
BASELINE_TOPIC = "bench/rtt"
DEVICE_ID = "mon1"
CODE = "BENCH_HIGH"
HIGH_HR, NORMAL_HR = 150.0, 70.0
WARMUP = 20  # untimed trials before each measurement
WAIT_S = 5.0  # longest wait for any one message before the run is declared failed
READY_S = 30.0  # longest wait for the daemon to connect and subscribe
STOP_S = 15.0  # longest wait for the daemon to exit after SIGTERM

POLICY = instant_alarm_policy(CODE, "bench/latency.py")

Stamped = tuple[float, aiomqtt.Message]


@dataclass
class Figures:
    """Latencies of one measurement, in seconds."""

    name: str
    samples: list[float]

    def pct(self, q: float) -> float:
        return float(np.percentile(np.asarray(self.samples), q))

    def line(self) -> str:
        p50, p99 = self.pct(50) * 1e3, self.pct(99) * 1e3
        return f"{self.name:<34} n={len(self.samples):<5} p50 {p50:7.3f} ms   p99 {p99:7.3f} ms"


# ---------------------------------------------------------------------------- MQTT helpers


def _client(broker: BrokerProcess, protocol: aiomqtt.ProtocolVersion, role: str) -> aiomqtt.Client:
    return MqttClient(
        broker.host,
        broker.port,
        identifier=f"bench-{role}-{uuid.uuid4().hex[:6]}",
        protocol=protocol,
        timeout=WAIT_S,
    )


@contextlib.asynccontextmanager
async def _arrivals(client: aiomqtt.Client) -> AsyncIterator[asyncio.Queue[Stamped]]:
    """A queue of every message `client` receives, with its arrival time, while in the block."""
    queue: asyncio.Queue[Stamped] = asyncio.Queue()

    async def read() -> None:
        async for message in client.messages:
            queue.put_nowait((time.perf_counter(), message))

    reader = asyncio.create_task(read(), name="bench.arrivals")
    try:
        yield queue
    finally:
        reader.cancel()
        await asyncio.wait([reader])


def _doc(message: aiomqtt.Message) -> dict[str, Any]:
    payload = message.payload
    if not isinstance(payload, bytes | bytearray):
        return {}
    with contextlib.suppress(ValueError):
        doc = json.loads(payload)
        if isinstance(doc, dict):
            return doc
    return {}


async def _arrival(queue: asyncio.Queue[Stamped], topic: str, **want: object) -> float:
    """The arrival time of the next message on `topic` whose JSON has the fields `want`.

    Other messages (retained state, the bed's status, stale vitals) are skipped.
    """
    async with asyncio.timeout(WAIT_S):
        while True:
            stamp, message = await queue.get()
            if str(message.topic) != topic:
                continue
            doc = _doc(message)
            if all(doc.get(k) == v for k, v in want.items()):
                return stamp


# ---------------------------------------------------------------------------- measurements


async def measure_baseline(
    broker: BrokerProcess, protocol: aiomqtt.ProtocolVersion, trials: int
) -> Figures:
    """The bare broker round trip: publish one small QoS 1 message, time its arrival."""
    latencies: list[float] = []
    async with _client(broker, protocol, "sub") as sub, _client(broker, protocol, "pub") as pub:
        await sub.subscribe(BASELINE_TOPIC, qos=1)
        async with _arrivals(sub) as queue:
            for i in range(-WARMUP, trials):
                t0 = time.perf_counter()
                await pub.publish(BASELINE_TOPIC, json.dumps({"i": i}), qos=1)
                stamp = await _arrival(queue, BASELINE_TOPIC, i=i)
                if i >= 0:
                    latencies.append(stamp - t0)
    return Figures("bare broker round trip (QoS 1)", latencies)


def _sample(t: float, hr: float) -> str:
    return json.dumps({"t": t, "param": "HR", "value": hr, "valid": True, "device_id": DEVICE_ID})


async def _until_ready(pub: aiomqtt.Client, queue: asyncio.Queue[Stamped], t: float) -> float:
    """Publish normal samples until one comes back on …/vitals; return the last sample time.

    The echo shows the daemon's driver is subscribed and its ward link connected. Samples sent
    before that are lost or echoed late; `_arrival` skips stale ones.
    """
    vitals = f"{PREFIX}/vitals"
    async with asyncio.timeout(READY_S):
        while True:
            t = _next_time(t)
            await pub.publish(MONITOR_TOPIC, _sample(t, NORMAL_HR), qos=1)
            try:
                async with asyncio.timeout(0.2):
                    await _arrival(queue, vitals, t=t)
            except TimeoutError:
                continue
            return t


async def measure_alarm_path(
    broker: BrokerProcess, protocol: aiomqtt.ProtocolVersion, trials: int
) -> tuple[Figures, Figures]:
    """Publish→`active` and publish→`cleared` through the running daemon."""
    alarms, vitals = f"{PREFIX}/alarms", f"{PREFIX}/vitals"
    active: list[float] = []
    cleared: list[float] = []
    # sample times follow the wall clock, strictly increasing: the bed checks every sample's
    # time against its own clock (docs/ARCHITECTURE.md "Time and units"), and a monitor
    # running ahead of it raises DEVICE_CLOCK_OFF and is retimed
    t = time.time()
    async with _client(broker, protocol, "ward") as sub, _client(broker, protocol, "mon") as pub:
        # the subscriber is a nurse console: the subscriptions `vigil watch` makes
        for topic in subscriptions(None):
            await sub.subscribe(topic, qos=1)
        async with _arrivals(sub) as queue:
            t = await _until_ready(pub, queue, t)
            for i in range(-WARMUP, trials):
                t = _next_time(t)
                t0 = time.perf_counter()
                await pub.publish(MONITOR_TOPIC, _sample(t, HIGH_HR), qos=1)
                on = await _arrival(queue, alarms, code=CODE, state="active", t=t)
                await _arrival(queue, vitals, t=t)
                t_off = _next_time(t)
                t1 = time.perf_counter()
                await pub.publish(MONITOR_TOPIC, _sample(t_off, NORMAL_HR), qos=1)
                off = await _arrival(queue, alarms, code=CODE, state="cleared", t=t_off)
                await _arrival(queue, vitals, t=t_off)
                if i >= 0:
                    active.append(on - t0)
                    cleared.append(off - t1)
    return (
        Figures("alarm path bedside -> console, active", active),
        Figures("clear path bedside -> console, cleared", cleared),
    )


def _next_time(t: float) -> float:
    """The next sample time: now, or just after `t` if the clock has not moved on (ms steps)."""
    return max(round(time.time(), 3), round(t + 0.001, 3))


# ---------------------------------------------------------------------------- set-up


def write_config(workdir: Path, broker: BrokerProcess, protocol: str) -> Path:
    """The bench policy and bed config in `workdir`; both are validated before use."""
    policy = workdir / "bench-policy.toml"
    policy.write_text(POLICY)
    config = workdir / "bed.toml"
    config.write_text(
        f"""\
[bed]
ward = "{WARD}"
bed = "{BED}"
[broker]
url = "{broker.url}"
protocol = "{protocol}"
[journal]
path = "{workdir / "journal.sqlite"}"
[alarms]
policy = "{policy}"
[metrics]
enabled = false
listen = "127.0.0.1:{free_port()}"
[[drivers]]
kind = "mqtt"
device_id = "{DEVICE_ID}"
topic = "{MONITOR_TOPIC}"
"""
    )
    load_policy(policy)
    load_settings(config, environ={})
    return config


def stop_daemon(daemon: subprocess.Popen[bytes]) -> int:
    """SIGTERM, wait, and return the exit status (SIGKILL and -9 if it hangs)."""
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(STOP_S)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
    return daemon.returncode


def _tail(path: Path, lines: int = 30) -> str:
    with contextlib.suppress(FileNotFoundError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


BURST = 10_000


async def measure_outbox_burst(broker: BrokerProcess, workdir: Path, protocol: str) -> str:
    """10,000 alarm events through the durable outbox of an in-process daemon.

    Each event is written to SQLite (synchronous=FULL) before it is published and removed on
    PUBACK; the figure is the time from the first write to the subscriber holding all of them,
    and the durable-write rate alone.
    """
    settings = Settings.model_validate(
        {
            "bed": {"ward": "bench", "bed": "burst"},
            "broker": {"url": broker.url, "protocol": protocol},
            "journal": {"path": str(workdir / "burst.sqlite")},
            "metrics": {"enabled": False},
        }
    )
    version = aiomqtt.ProtocolVersion.V5 if protocol == "5" else aiomqtt.ProtocolVersion.V311
    async with (
        _client(broker, version, "burst") as ward,
        Daemon(settings, load_policy()) as daemon,
    ):
        await ward.subscribe("vigil/bench/burst/alarms", qos=1)
        await daemon.connected(10)
        template = AlarmEvent(
            t=time.time(), code="BENCH", priority=Priority.HIGH, kind=AlarmKind.TECHNICAL,
            state=AlarmState.ACTIVE, param=None, value=None, limit=None, phase=Phase.NONE,
            message="burst", bed="bench/burst",
        )  # fmt: skip
        got = 0
        drained: list[float] = []

        async def watch_outbox() -> None:
            # the daemon's side: every event acknowledged by the broker (PUBACK)
            while daemon.ward.pending_alarms:  # noqa: ASYNC110 - sampling, not waiting
                await asyncio.sleep(0.005)
            drained.append(time.perf_counter())

        start = time.perf_counter()
        for i in range(1, BURST + 1):
            daemon.ward.publish_alarm(dataclasses.replace(template, seq=i, alarm_id=str(i)))
        written = time.perf_counter() - start
        watcher = asyncio.create_task(watch_outbox())
        async with asyncio.timeout(120):
            async for _ in ward.messages:
                got += 1
                if got == BURST:
                    break
        total = time.perf_counter() - start
        await watcher
    acked = drained[0] - start - written
    return (
        f"outbox burst: {BURST} alarm events durable in {written:.2f} s "
        f"({BURST / written:,.0f}/s); all acknowledged by the broker {acked:.2f} s later "
        f"({BURST / acked:,.0f}/s, {PIPELINE} in flight); all at the subscriber after "
        f"{total:.2f} s in all ({BURST / total:,.0f} events/s)"
    )


def run(trials: int, implementation: BrokerImplementation) -> int:
    """The whole benchmark; returns the process exit status."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmp:
        workdir = Path(tmp)
        broker = BrokerProcess(workdir / "broker", implementation=implementation)
        protocol = "5" if implementation == "mosquitto" else "3.1.1"
        version = aiomqtt.ProtocolVersion.V5 if protocol == "5" else aiomqtt.ProtocolVersion.V311
        broker.start()
        daemon: subprocess.Popen[bytes] | None = None
        log_path = workdir / "daemon.log"
        try:
            print(f"broker: {implementation} on {broker.url}, MQTT {protocol}; {trials} trials")
            baseline = asyncio.run(measure_baseline(broker, version, trials))
            print(baseline.line())

            config = write_config(workdir, broker, protocol)
            with log_path.open("wb") as log:
                daemon = subprocess.Popen(
                    [sys.executable, "-m", "monitor.cli", "run", "--config", str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            try:
                active, cleared = asyncio.run(measure_alarm_path(broker, version, trials))
            except (TimeoutError, aiomqtt.MqttError) as exc:
                print(f"alarm path failed: {exc!r}\n--- daemon log ---\n{_tail(log_path)}")
                return 1
            print(active.line())
            print(cleared.line())
            for q in (50, 99):
                print(
                    f"ratio alarm path / bare round trip, p{q}: "
                    f"{active.pct(q) / baseline.pct(q):.2f}"
                )
            status = stop_daemon(daemon)
            print(f"daemon exit status after SIGTERM: {status}")
            if status != 0:
                print(f"--- daemon log ---\n{_tail(log_path)}")
                return 1
            print(asyncio.run(measure_outbox_burst(broker, workdir, protocol)))
        finally:
            if daemon is not None and daemon.poll() is None:
                daemon.kill()
                daemon.wait()
            broker.stop()
    print(f"total {time.monotonic() - started:.1f} s")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=1000, help="trials per measurement")
    parser.add_argument(
        "--broker",
        choices=["mosquitto", "amqtt"],
        default="mosquitto",
        help="broker (default mosquitto; the embedded amqtt broker if mosquitto is absent)",
    )
    args = parser.parse_args()
    if args.trials < 1:
        parser.error("--trials must be at least 1")
    implementation: BrokerImplementation = "amqtt" if args.broker == "amqtt" else "mosquitto"
    if implementation == "mosquitto" and mosquitto_path() is None:
        print("mosquitto is not installed: using the embedded amqtt broker")
        implementation = "amqtt"
    return run(args.trials, implementation)


if __name__ == "__main__":
    sys.exit(main())
