"""`vigil decode DEVICE FILE`: the samples in a raw capture of a monitor's output.

Every device whose spec names a decoder (`drivers/<device>/spec.py`, listed in
`drivers.registry`) can be decoded: ``decode_capture(data, *, device_id) -> (samples, stats)``,
sans-I/O, the capture's own time stamps (a capture has no live clock). The samples go to stdout
as Sample JSON lines (docs/ARCHITECTURE.md); a summary goes to stderr: frames, samples, and every
drop with its reason, so an engineer sees at once whether a capture is the protocol they think
it is.

Exit status: 0 when at least one frame decoded, 1 when none did (wrong device, wrong baud rate,
another output mode), 2 for a usage error (unknown device, unreadable file).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from drivers.registry import SPECS
from drivers.spec import load

if TYPE_CHECKING:
    import argparse

    from drivers.base import DriverStats
    from kernel.vocabulary import Sample

__all__ = ["DECODERS", "decode_main"]

# kind -> "module:function", from the specs; imported on use
DECODERS: Final[dict[str, str]] = {s.kind: s.decode for s in SPECS if s.decode is not None}

Decoder = Callable[..., "tuple[list[Sample], DriverStats]"]


def decode_main(args: argparse.Namespace) -> int:
    """Decode `args.file` as `args.device`; return the exit status."""
    target = DECODERS.get(args.device)
    if target is None:
        print(
            f"vigil decode: unknown device {args.device!r} (known: {', '.join(DECODERS)})",
            file=sys.stderr,
        )
        return 2
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        print(f"vigil decode: {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    decode: Decoder = load(target)
    samples, stats = decode(data, device_id=args.device_id or args.device)
    out = sys.stdout
    for sample in samples:
        out.write(json.dumps(sample.to_json()) + "\n")
    out.flush()
    dropped = ", ".join(f"{reason} {n}" for reason, n in sorted(stats.dropped.items()))
    print(
        f"vigil decode: {args.file}: {len(data)} bytes, {stats.frames} frames, "
        f"{len(samples)} samples, dropped: {dropped or 'none'}",
        file=sys.stderr,
    )
    return 0 if stats.frames else 1
