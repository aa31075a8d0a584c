"""Throughput of `vigil hl7` to a local MLLP receiver, and its CPU at a ward's load.

    python bench/hl7_gateway.py [--beds 64] [--alarms 1000] [--vitals-s 10] [--interval-s 1]

What it does:
1. Starts a real broker on a free loopback port (`tests.helpers.BrokerProcess`) and a
   python-hl7 asyncio MLLP receiver that answers every message AA.
2. Runs the gateway in this process (`monitor.hl7.gateway.Gateway`, the same object
   `vigil hl7` runs), the receiver in the same loop, with `--beds` beds.
3. Burst: publishes `--alarms` alarm events spread over the beds as fast as the broker takes
   them, and times until the receiver has every one: PCD-04 messages per second, end to end
   (MQTT in, SQLite queue, MLLP out, ACK back, one message in flight at a time).
4. Steady state: every bed publishes HR, SpO2, PR and RR once a second for `--vitals-s` seconds
   with the report interval at `--interval-s` (1 s by default: 60 times the default rate, so a
   short run shows the cost of the default's minute), and prints the process CPU time per wall
   second.

Figures are the whole process's (gateway, receiver and publishing client in one loop), so they
are an upper bound on the gateway's own share.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import tempfile
import time
from pathlib import Path

from drivers.mqtt.client import Client as MqttClient
from monitor.hl7.gateway import Gateway
from tests.helpers import BrokerProcess
from tests.monitor.hl7.receiver import Receiver
from tests.payloads import alarm_payload


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(beds: int, alarms: int, vitals_s: float, interval_s: float, tmp: Path) -> None:
    with BrokerProcess(tmp / "broker") as broker:
        async with Receiver() as receiver:
            protocol = "5" if broker.implementation == "mosquitto" else "3.1.1"
            config = receiver.gateway_config(
                tmp / "q.sqlite",
                {"url": broker.url, "protocol": protocol},
                interval_s=interval_s,
            )
            names = [f"b{i}" for i in range(1, beds + 1)]
            async with (
                Gateway(config) as gw,
                MqttClient(broker.host, broker.port, identifier="bench") as client,
            ):
                await gw.connected(10)
                for name in names:
                    patient = {"session_id": name, "patient_id": f"P-{name}"}
                    session = {"t": time.time(), "phase": "infusion", "session": patient}
                    await client.publish(
                        f"vigil/w1/{name}/session", json.dumps(session).encode(), qos=1
                    )
                start, cpu0 = time.perf_counter(), cpu_s()
                for i in range(alarms):
                    name = names[i % beds]
                    await client.publish(
                        f"vigil/w1/{name}/alarms", alarm_payload(name, i // beds + 1), qos=1
                    )
                await receiver.wait_for(lambda r: len(r) >= alarms, timeout=600)
                wall, cpu = time.perf_counter() - start, cpu_s() - cpu0
                print(
                    f"burst: {alarms} PCD-04 over {beds} beds in {wall:.2f} s: "
                    f"{alarms / wall:.0f} messages/s, CPU {cpu / wall:.0%} of one core"
                )
                before = len(receiver.received)
                start, cpu0 = time.perf_counter(), cpu_s()
                while time.perf_counter() - start < vitals_s:
                    now = time.time()
                    for name in names:
                        for param, value in (("HR", 72), ("SPO2", 97), ("PR", 71), ("RR", 14)):
                            sample = {"t": now, "param": param, "value": value, "valid": True,
                                      "device_id": "mon1"}  # fmt: skip
                            await client.publish(
                                f"vigil/w1/{name}/vitals", json.dumps(sample).encode(), qos=0
                            )
                    await asyncio.sleep(max(0.0, 1.0 - (time.time() - now)))
                wall, cpu = time.perf_counter() - start, cpu_s() - cpu0
                sent = len(receiver.received) - before
                print(
                    f"steady: {beds} beds x 4 params at 1 Hz, PCD-01 every {interval_s:g} s: "
                    f"{sent} reports "
                    f"in {wall:.1f} s, CPU {cpu / wall:.0%} of one core (with the publisher)"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beds", type=int, default=64)
    parser.add_argument("--alarms", type=int, default=1000)
    parser.add_argument("--vitals-s", type=float, default=10.0)
    parser.add_argument(
        "--interval-s", type=float, default=1.0, help="PCD-01 interval (the default is 60)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vigil-bench-hl7-") as tmp:
        asyncio.run(run(args.beds, args.alarms, args.vitals_s, args.interval_s, Path(tmp)))


if __name__ == "__main__":
    main()
