"""The device half of the Nellcor N-595 ASCII output: headings, then a data line every 2 s.

Reuses `drivers.nellcor.codec.encode_reading` and `encode_heading`, so the simulator and the
driver agree by construction; the parser is tested on lines written by hand from the manuals'
examples (docs/devices.md §2.6).
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from drivers.nellcor.codec import encode_heading, encode_reading
from kernel.vocabulary import Param, Sample
from simulators.serial_monitor import Frame

__all__ = ["NellcorSide"]

_EVERY_S: Final = 2  # a data line every 2 s
_HEADING_EVERY: Final = 25  # the heading again after 25 lines


@dataclass
class NellcorSide:
    """An N-595 printing its real-time output; `status` is sent with every line (e.g. ("SO",))."""

    status: tuple[str, ...] = ()
    _lines: int = 0

    def receive(self, data: bytes, now: float) -> list[bytes]:  # noqa: ARG002 - MonitorSide
        """The output is one way: whatever the host sends is ignored."""
        return []

    def second(self, samples: Sequence[Sample], now: float) -> list[bytes]:
        """On even seconds, a data line (after the heading when one is due)."""
        if int(now) % _EVERY_S:
            return []
        values = {s.param: s.value for s in samples}
        if Param.SPO2 not in values and Param.PR not in values:
            return []
        out: list[bytes] = []
        if self._lines % _HEADING_EVERY == 0:
            out.append(encode_heading())
        self._lines += 1
        stamp = dt.datetime.fromtimestamp(now)  # noqa: DTZ006 - the oximeter keeps local time
        spo2, pr = values.get(Param.SPO2), values.get(Param.PR)
        low = frozenset({"SPO2"}) if spo2 is not None and spo2 < 85 else frozenset()
        line = encode_reading(stamp=stamp, spo2=spo2, pr=pr, status=self.status, beyond_limits=low)
        carried = sum(math.isfinite(values.get(p, math.nan)) for p in (Param.SPO2, Param.PR))
        out.append(Frame(line, 0 if self.status else carried))
        return out

    def corrupt(self, frame: bytes, rng: random.Random) -> bytes:
        """One byte with its top bit set, as a framing error leaves it (no checksum here)."""
        i = rng.randrange(0, max(1, len(frame) - 2))
        return frame[:i] + bytes([frame[i] | 0x80]) + frame[i + 1 :]
