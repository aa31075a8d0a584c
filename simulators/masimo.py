"""The device half of Masimo ASCII 1: a line a second with the scenario's SpO2 and pulse rate.

Reuses `drivers.masimo.codec.encode_line`, so the simulator and the driver agree by
construction on the format and a test of one is a test of the other only where it should be:
the driver's parser is tested separately on lines written by hand from the public examples.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from drivers.masimo.codec import encode_line
from kernel.vocabulary import Param, Sample
from simulators.serial_monitor import Frame

__all__ = ["MasimoSide"]


@dataclass
class MasimoSide:
    """A Masimo monitor set to ASCII 1 output.

    `model` picks the line layout (`encode_line`); `exc` is the EXC field sent with every line
    (0x800: SET on, no problem), so a test can put the sensor off the finger (0x20).
    """

    model: str = "rad8"
    exc: int = 0x800

    def receive(self, data: bytes, now: float) -> list[bytes]:  # noqa: ARG002 - MonitorSide
        """ASCII 1 is output only: whatever the host sends is ignored."""
        return []

    def second(self, samples: Sequence[Sample], now: float) -> list[bytes]:
        """One line with this second's SpO2 and pulse rate (dashes for what is missing)."""
        values = {s.param: s.value for s in samples}
        if Param.SPO2 not in values and Param.PR not in values:
            return []  # a second with only a cuff reading: the oximeter has nothing new
        stamp = dt.datetime.fromtimestamp(now)  # noqa: DTZ006 - the monitor keeps local time
        line = encode_line(
            stamp=stamp,
            spo2=values.get(Param.SPO2),
            pr=values.get(Param.PR),
            pi=3.6,
            pvi=12.0,
            exc=self.exc,
            model=self.model,
        )
        # what the line carries: a missing or NaN value goes out as dashes
        carried = sum(math.isfinite(values.get(p, math.nan)) for p in (Param.SPO2, Param.PR))
        return [Frame(line, carried)]

    def corrupt(self, frame: bytes, rng: random.Random) -> bytes:
        """One byte with its top bit set, as a framing error leaves it.

        ASCII 1 has no checksum: only damage that leaves something other than printable ASCII
        can be detected by a receiver.
        """
        i = rng.randrange(0, max(1, len(frame) - 2))
        return frame[:i] + bytes([frame[i] | 0x80]) + frame[i + 1 :]
