"""A whole ward on one machine: N bed daemons, their monitors at 1 Hz, one broker, one console.

    python bench/ward.py [--beds 64] [--seconds 60] [--every 10]

What it does:
1. Starts a real mosquitto (`tests.helpers.BrokerProcess`) on a free loopback port.
2. Runs `--beds` real bed daemons (`monitor.daemon.Daemon`, each with its own journal, outbox,
   MQTT driver and ward link) in this process, with a one-rule policy (HR >= 140, zero delay,
   non-latching, `clear_after_s = 0`), so the figures are the alarm path and nothing else.
3. A second process (`_WARD` below) plays every bed's monitor at 1 Hz (HR 70, SpO2 97, QoS 0)
   and the nurses' console (subscribed to `vigil/+/+/alarms`): each bed's HR crosses to 150 for
   one sample every `--every` seconds (staggered across beds), raising and clearing the alarm.
   The console times each alarm from the publish of the crossing sample (the event's `t` is
   that sample's `t`, stamped just before publishing) to its arrival. The baseline is the bare
   broker round trip of an alarm event's payload, QoS 1, between two clients of that same
   process, measured during the same run: the alarm path crosses the broker twice (monitor to
   bed, bed to console), so twice the baseline is its floor.
4. Prints the figures: latency p50/p99 of alarm and baseline; every alarm accounted for (the
   beds' journals' `seq` against what the console received, per bed: missing, repeated);
   CPU seconds and wall time, CPU share and RSS per bed (this process, which holds only the
   beds), the broker's CPU; and the load average, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alarm_policy import instant_alarm_policy  # bench/alarm_policy.py, beside this script

from alarms.policy import load_policy
from monitor.daemon import Daemon
from monitor.settings import Settings
from tests.helpers import BrokerProcess

WARD = "w1"
CODE = "BENCH_HR_HIGH"
POLICY = instant_alarm_policy(CODE, "bench/ward.py")
TICKS = os.sysconf("SC_CLK_TCK")

# The monitors and the console, in their own process so that their work is not the beds'.
# argv: port beds seconds every; prints one JSON line of results.
_WARD = r"""
import json, sys, time, threading
import paho.mqtt.client as mqtt
port, beds, every = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[4])
seconds = float(sys.argv[3])
V2 = mqtt.CallbackAPIVersion.VERSION2
received = {}          # bed -> list of seq
latency = []           # alarm active: arrival - crossing publish
probes = {}            # probe id -> publish time
baseline = []
lock = threading.Lock()

def on_message(c, u, m):
    now = time.time()
    if m.topic == "bench/probe":
        doc = json.loads(m.payload)
        with lock:
            baseline.append(now - probes.pop(doc["probe"]))
        return
    doc = json.loads(m.payload)
    bed = m.topic.split("/")[2]
    with lock:
        received.setdefault(bed, []).append(doc["seq"])
        if doc["state"] == "active" and doc["code"] == "BENCH_HR_HIGH":
            latency.append(now - doc["t"])

console = mqtt.Client(V2, client_id="bench-console", protocol=mqtt.MQTTv5)
console.on_message = on_message
console.connect("127.0.0.1", port)
console.subscribe([("vigil/+/+/alarms", 1), ("bench/probe", 1)])
console.loop_start()
monitors = mqtt.Client(V2, client_id="bench-monitors", protocol=mqtt.MQTTv5)
monitors.connect("127.0.0.1", port)
monitors.loop_start()
prober = mqtt.Client(V2, client_id="bench-prober", protocol=mqtt.MQTTv5)
prober.connect("127.0.0.1", port)
prober.loop_start()
time.sleep(1.0)
payload_pad = "x" * 300  # an alarm event's size (~400 bytes of JSON)
print("ready", flush=True)
start = time.time()
second = 0
while (now := time.time()) < start + seconds:
    for b in range(beds):
        # bed b crosses in the second where (second + b) % every == 0: staggered
        hr = 150.0 if (second + b) % every == 0 and second > 2 else 70.0
        t = time.time()
        for param, value in (("HR", hr), ("SPO2", 97.0)):
            sample = {"t": t, "param": param, "value": value, "valid": True, "device_id": f"m{b}"}
            monitors.publish(f"monitors/m{b}/samples", json.dumps(sample), qos=0)
        # spread the beds over the second, as independent monitors are
        time.sleep(max(0.0, start + second + (b + 1) / beds - time.time()))
    pid = f"p{second}"
    with lock:
        probes[pid] = time.time()
    prober.publish("bench/probe", json.dumps({"probe": pid, "pad": payload_pad}), qos=1)
    second += 1
time.sleep(3.0)  # the last alarms
monitors.loop_stop(); prober.loop_stop(); console.loop_stop()
print(json.dumps({"received": received, "latency": latency, "baseline": baseline}), flush=True)
"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> float:
    """Resident set size of `pid` now, MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def settings(broker: BrokerProcess, workdir: Path, i: int, policy: Path) -> Settings:
    """Bed `b<i>`'s config: its own journal; its monitor on `monitors/m<i>/samples`."""
    return Settings.model_validate(
        {
            "bed": {"ward": WARD, "bed": f"b{i}"},
            "broker": {"url": broker.url, "protocol": "5"},
            "journal": {"path": str(workdir / f"b{i}.sqlite"), "min_free_mb": 0},
            "alarms": {"policy": str(policy)},
            "metrics": {"enabled": False},
            "drivers": [{"kind": "mqtt", "device_id": f"m{i}", "topic": f"monitors/m{i}/samples"}],
        }
    )


def pct(values: list[float], q: float) -> float:
    """The `q`-th percentile of `values`, in ms."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return 1000 * ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def run(beds: int, seconds: float, every: int) -> int:
    """Start the ward, play it, print the figures; 1 when an alarm is missing or repeated."""
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        policy_path = workdir / "policy.toml"
        policy_path.write_text(POLICY)
        policy = load_policy(policy_path)
        rss_before = rss_mb(os.getpid())
        with BrokerProcess(workdir / "broker", implementation="mosquitto") as broker:
            assert broker._process is not None  # noqa: SLF001 - the bench reads its CPU
            broker_pid = broker._process.pid  # noqa: SLF001
            async with contextlib.AsyncExitStack() as stack:
                daemons = [
                    await stack.enter_async_context(
                        Daemon(settings(broker, workdir, i, policy_path), policy)
                    )
                    for i in range(beds)
                ]
                await asyncio.gather(*(d.connected(timeout=60) for d in daemons))
                ward = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-c",
                    _WARD,
                    str(broker.port),
                    str(beds),
                    str(seconds),
                    str(every),
                    stdout=asyncio.subprocess.PIPE,
                )
                assert ward.stdout is not None
                async with asyncio.timeout(30):
                    await ward.stdout.readline()  # "ready"
                load0 = os.getloadavg()
                wall0, cpu0, broker0 = time.monotonic(), cpu_seconds(os.getpid()), 0.0
                broker0 = cpu_seconds(broker_pid)
                async with asyncio.timeout(seconds + 60):
                    out = await ward.stdout.readline()
                    await ward.wait()
                wall = time.monotonic() - wall0
                cpu = cpu_seconds(os.getpid()) - cpu0
                broker_cpu = cpu_seconds(broker_pid) - broker0
                rss = rss_mb(os.getpid())
                raised = {f"b{i}": d.core.seq for i, d in enumerate(daemons)}
                pending = sum(d.ward.pending_alarms for d in daemons)
    results: dict[str, Any] = json.loads(out)
    missing = repeated = 0
    for bed, n in raised.items():
        got = results["received"].get(bed, [])
        missing += len(set(range(1, n + 1)) - set(got))
        repeated += len(got) - len(set(got))
    lat, base = results["latency"], results["baseline"]
    print(f"ward bench: {beds} beds, monitors at 1 Hz (HR + SpO2), one alarm per bed per {every} s")
    print(
        f"load average at start {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, "
        f"at end {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)"
    )
    print(
        f"alarm path (crossing publish -> console): n={len(lat)} "
        f"p50 {pct(lat, 50):.1f} ms  p99 {pct(lat, 99):.1f} ms  max {pct(lat, 100):.1f} ms"
    )
    print(
        f"baseline (bare broker round trip, same payload size, QoS 1): n={len(base)} "
        f"p50 {pct(base, 50):.1f} ms  p99 {pct(base, 99):.1f} ms"
    )
    total = sum(raised.values())
    print(
        f"alarm events: raised {total}, received {sum(map(len, results['received'].values()))}, "
        f"missing {missing}, repeated {repeated}, still in outboxes {pending}"
    )
    print(
        f"beds' process: {cpu:.1f} CPU s in {wall:.1f} s wall = {100 * cpu / wall:.1f} % of one "
        f"CPU, {100 * cpu / wall / beds:.2f} % per bed; RSS {rss:.0f} MB "
        f"({(rss - rss_before) / beds:.1f} MB per bed above the {rss_before:.0f} MB before)"
    )
    print(f"broker: {broker_cpu:.1f} CPU s = {100 * broker_cpu / wall:.1f} % of one CPU")
    return 1 if missing or repeated else 0


def main() -> int:
    """Parse the options and run the bench."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beds", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--every", type=int, default=10, help="seconds between a bed's alarms")
    args = parser.parse_args()
    return asyncio.run(run(args.beds, args.seconds, args.every))


if __name__ == "__main__":
    raise SystemExit(main())
