"""Decode throughput per serial codec, beside the time to merely read the same bytes.

    python bench/decode.py [--hours 3] [--repeat 3]

For each serial device, a raw capture of `--hours` of the hypertensive-surge scenario is made
in memory (`simulators.capture`: the driver's link and the simulator's monitor side talking,
every byte the monitor sends kept) and written to a temporary file. Then, best of `--repeat`:
- read: the file read frame by frame, as a port delivers it to the driver (the baseline);
- decode: the same reads fed to a fresh link (`LinkProtocol.receive`) at each frame's send
  time, samples built.
Printed: frames, bytes, frames/s and MB/s of decoding, and decode time / read time. For scale,
one bed produces 1 frame/s (Masimo), 1 poll result/s (IntelliVue) or 0.2 records/s (GE).
"""

from __future__ import annotations

import argparse
import importlib
import tempfile
import time
from pathlib import Path

from drivers.base import DriverStats
from drivers.link import LinkProtocol
from simulators.capture import record_frames

T0 = 1767225600.0

# device -> (link class "module:Class" taking (device_id, stats), monitor side "module:Class")
DEVICES = {
    "masimo": ("drivers.masimo.codec:MasimoLink", "simulators.masimo:MasimoSide"),
    "ge-s5": ("drivers.ge_s5.codec:GeS5Link", "simulators.ge_s5:GeS5Side"),
    "intellivue": (
        "drivers.intellivue.codec:IntelliVueLink",
        "simulators.intellivue:IntelliVueSide",
    ),
}


def load(ref: str) -> type:
    module, _, name = ref.partition(":")
    cls: type = getattr(importlib.import_module(module), name)
    return cls


def link_for(device: str, stats: DriverStats) -> LinkProtocol:
    link: LinkProtocol = load(DEVICES[device][0])("bench", stats)
    return link


def read_all(path: Path, sizes: list[int]) -> int:
    """Read the capture frame by frame, as a port delivers it: the baseline."""
    n = 0
    with path.open("rb", buffering=0) as f:
        for size in sizes:
            n += len(f.read(size))
    return n


def decode_all(device: str, path: Path, frames: list[tuple[float, int]]) -> DriverStats:
    """Read the capture frame by frame and feed each to a fresh link at its send time."""
    stats = DriverStats()
    link = link_for(device, stats)
    with path.open("rb", buffering=0) as f:
        for t, size in frames:
            stats.samples += len(link.receive(f.read(size), t).samples)
    return stats


def best(repeat: int, fn: object) -> float:
    assert callable(fn)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{args.hours:g} h of hypertensive-surge per device, best of {args.repeat}")
    print(
        f"{'device':<12}{'bytes':>12}{'frames':>9}{'samples':>9}"
        f"{'read s':>9}{'decode s':>10}{'frames/s':>11}{'MB/s':>8}{'ratio':>8}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for device, (_, side_ref) in DEVICES.items():
            sent = record_frames(
                link_for(device, DriverStats()),
                load(side_ref)(),
                scenario="hypertensive-surge",
                t0=T0,
                seconds=args.hours * 3600,
            )
            capture = b"".join(frame for _, frame in sent)
            frames = [(t, len(frame)) for t, frame in sent]
            sizes = [size for _, size in frames]
            path = Path(tmp) / f"{device}.raw"
            path.write_bytes(capture)
            stats = decode_all(device, path, frames)
            read_s = best(args.repeat, lambda p=path, z=sizes: read_all(p, z))
            decode_s = best(args.repeat, lambda d=device, p=path, f=frames: decode_all(d, p, f))
            print(
                f"{device:<12}{len(capture):>12,}{stats.frames:>9,}{stats.samples:>9,}"
                f"{read_s:>9.4f}{decode_s:>10.4f}{stats.frames / decode_s:>11,.0f}"
                f"{len(capture) / decode_s / 1e6:>8.2f}{decode_s / read_s:>8.0f}x"
            )
            if sum(stats.dropped.values()):
                raise SystemExit(f"{device}: clean capture had drops: {dict(stats.dropped)}")


if __name__ == "__main__":
    main()
