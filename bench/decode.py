"""Decode throughput per device codec, beside the time to merely read the same bytes.

    python bench/decode.py [--hours 3] [--repeat 3] [--device KIND ...]

For each device of the registry with a link and a simulator (`drivers/registry.py`), a raw
capture of `--hours` of the hypertensive-surge scenario is made in memory
(`simulators.capture`: the driver's link and the simulator's monitor side talking, every byte
the monitor sends kept) and written to a temporary file. Then, best of `--repeat`:
- read: the file read frame by frame, as a port delivers it to the driver (the baseline);
- decode: the same reads fed to a fresh link (`LinkProtocol.receive`) at each frame's send
  time, samples built.
Printed: frames, bytes, frames/s and MB/s of decoding, decode time / read time, and the goal:
1000 times the device's wire rate (its line's bytes per second: the baud rate over the bits a
byte takes, start, data, parity and stop; for a network monitor, the bytes a second its simulator
sends; issue 14), "ok" when decoding is at least that fast.
Times are CPU seconds of this process (`time.process_time`): the machine the benchmark runs on
is shared, and wall time would measure the neighbours. For scale, one bed produces 1 frame/s
(Masimo, Ivy), 1 poll result/s (IntelliVue), 0.5 lines/s (Nellcor), 4 messages/s (Mindray) or 0.2
records/s (GE).
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from drivers.base import DriverStats
from drivers.link import LinkProtocol
from drivers.registry import SPECS
from drivers.spec import DeviceSpec, load
from simulators.capture import record_frames

T0 = 1767225600.0


def benched() -> list[DeviceSpec]:
    """The devices with a link to feed and a simulator to make the capture."""
    return [s for s in SPECS if s.link is not None and s.simulator is not None]


def link_for(spec: DeviceSpec, stats: DriverStats) -> LinkProtocol:
    assert spec.link is not None
    link: LinkProtocol = load(spec.link)("bench", stats)
    return link


def wire_rate(spec: DeviceSpec) -> float | None:
    """The device's line rate in bytes per second, if it has a serial line."""
    line = spec.line
    if line is None:
        return None
    bits = 1 + line.bytesize + (line.parity != "N") + line.stopbits
    return line.baudrate / bits


def read_all(path: Path, sizes: list[int]) -> int:
    """Read the capture frame by frame, as a port delivers it: the baseline."""
    n = 0
    with path.open("rb", buffering=0) as f:
        for size in sizes:
            n += len(f.read(size))
    return n


def decode_all(spec: DeviceSpec, path: Path, frames: list[tuple[float, int]]) -> DriverStats:
    """Read the capture frame by frame and feed each to a fresh link at its send time."""
    stats = DriverStats()
    link = link_for(spec, stats)
    with path.open("rb", buffering=0) as f:
        for t, size in frames:
            stats.samples += len(link.receive(f.read(size), t).samples)
    return stats


def best(repeat: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return max(min(times), 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", action="append", help="only this kind (repeatable)")
    args = parser.parse_args()
    specs = [s for s in benched() if not args.device or s.kind in args.device]
    print(f"{args.hours:g} h of hypertensive-surge per device, best of {args.repeat}, CPU s")
    print(
        f"{'device':<16}{'bytes':>12}{'frames':>9}{'samples':>9}{'read s':>9}{'decode s':>10}"
        f"{'frames/s':>11}{'MB/s':>8}{'ratio':>8}{'goal MB/s':>11}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for spec in specs:
            assert spec.simulator is not None
            sent = record_frames(
                link_for(spec, DriverStats()),
                load(spec.simulator)(),
                scenario="hypertensive-surge",
                t0=T0,
                seconds=args.hours * 3600,
            )
            capture = b"".join(frame for _, frame in sent)
            frames = [(t, len(frame)) for t, frame in sent]
            sizes = [size for _, size in frames]
            path = Path(tmp) / f"{spec.kind}.raw"
            path.write_bytes(capture)
            stats = decode_all(spec, path, frames)
            read_s = best(args.repeat, functools.partial(read_all, path, sizes))
            decode_s = best(args.repeat, functools.partial(decode_all, spec, path, frames))
            mb_s = len(capture) / decode_s / 1e6
            rate = wire_rate(spec)
            if rate is None and spec.transport == "tcp":
                # a network monitor has no line rate: its wire rate is what it sends, flat out
                rate = len(capture) / (args.hours * 3600)
            goal = "" if rate is None else f"{rate * 1000 / 1e6:.2f}"
            verdict = "" if rate is None else (" ok" if mb_s * 1e6 >= rate * 1000 else " SLOW")
            print(
                f"{spec.kind:<16}{len(capture):>12,}{stats.frames:>9,}{stats.samples:>9,}"
                f"{read_s:>9.4f}{decode_s:>10.4f}{stats.frames / decode_s:>11,.0f}"
                f"{mb_s:>8.2f}{decode_s / read_s:>8.0f}x{goal:>11}{verdict}"
            )
            if sum(stats.dropped.values()):
                raise SystemExit(f"{spec.kind}: clean capture had drops: {dict(stats.dropped)}")


if __name__ == "__main__":
    main()
