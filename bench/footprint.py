"""Footprint of `vigil run` on a bedside box: peak RSS and CPU share, beside a bare process.

    python bench/footprint.py [--seconds 60]

Runs, on a real mosquitto on a free loopback port:
- `vigil run` with one MQTT monitor, fed by `vigil simulate mqtt-monitor` at real speed (1 Hz HR,
  PR and SpO2 plus cuff readings: the normal-session scenario), and one serial monitor, a Masimo
  pulse oximeter (`vigil simulate masimo --pty`: one ASCII 1 line a second on a pseudo-terminal),
  for `--seconds`;
- beside it, a bare Python process that only imports Vigil's dependencies and sleeps as long.
Peak RSS is the kernel's high-water mark (VmHWM in /proc/PID/status); CPU share is the process's
user + system time over the wall time, as a fraction of one core.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers import BrokerProcess

DEPS = "import aiomqtt, numpy, pydantic, prometheus_client, serial, serial_asyncio_fast, amqtt"
TICKS = os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def measure(proc: subprocess.Popen[bytes], seconds: float) -> tuple[float, float]:
    start = time.monotonic()
    cpu0 = cpu_seconds(proc.pid)
    time.sleep(seconds)
    wall = time.monotonic() - start
    return peak_rss_mb(proc.pid), (cpu_seconds(proc.pid) - cpu0) / wall


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, BrokerProcess(Path(tmp) / "broker") as broker:
        config = Path(tmp) / "bed.toml"
        config.write_text(
            f'[bed]\nward = "w1"\nbed = "b1"\n[broker]\nurl = "{broker.url}"\n'
            f'[journal]\npath = "{tmp}/journal.sqlite"\n[metrics]\nenabled = false\n'
            '[[drivers]]\nkind = "mqtt"\ndevice_id = "mon1"\ntopic = "monitors/mon1/samples"\n'
            f'[[drivers]]\nkind = "masimo"\ndevice_id = "ox1"\nport = "{tmp}/masimo.pty"\n'
        )
        null = subprocess.DEVNULL
        oximeter = subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", "simulate", "masimo", "--pty",
             f"{tmp}/masimo.pty", "--scenario", "normal-session", "--device-id", "ox1"],
            stdout=null, stderr=null,
        )  # fmt: skip
        log = Path(tmp) / "daemon.log"
        daemon = subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", "run", "--config", str(config)],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        sim = subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", "simulate", "mqtt-monitor", "--mqtt",
             broker.url, "--scenario", "normal-session", "--bed", "vigil/w1/b1"],
            stdout=null, stderr=null,
        )  # fmt: skip
        bare = subprocess.Popen(
            [sys.executable, "-c", f"{DEPS}; import time; time.sleep({args.seconds + 30})"],
            stdout=null,
            stderr=null,
        )
        time.sleep(3)  # start-up (imports, connections) is not the steady state measured
        try:
            rss, cpu = measure(daemon, args.seconds)
            bare_rss, bare_cpu = peak_rss_mb(bare.pid), cpu_seconds(bare.pid) / args.seconds
        finally:
            stop(sim)
            stop(oximeter)
            stop(bare)
            rc = stop(daemon)
        # measured with both monitors streaming, or not at all
        flowing = log.read_text()
    print(f"vigil run, 1 MQTT monitor and 1 Masimo on a pty, at 1 Hz, {args.seconds:g} s:")
    print(f"  peak RSS {rss:6.1f} MB   CPU {cpu * 100:5.2f} % of one core")
    print("bare Python importing the dependencies:")
    print(
        f"  peak RSS {bare_rss:6.1f} MB   CPU {bare_cpu * 100:5.2f} % of one core (incl. imports)"
    )
    print(f"RSS ratio {rss / bare_rss:.2f}; daemon exit status {rc}")
    for device in ("mon1", "ox1"):
        if f"event=subscribed device={device}" not in flowing and (
            f"event=data_flowing device={device}" not in flowing
        ):
            print(f"{device} never delivered data: the figures do not count")
            return 1
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
