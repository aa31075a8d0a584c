"""The device half of Ivy 450C ANSAR-B: a message a second with the scenario's vitals.

Reuses `drivers.ivy_450c.codec.encode_message`, so the simulator and the driver agree by
construction on the format; the driver's parser is tested separately on messages written by hand
from the protocol's description (docs/devices.md §2.5).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from drivers.ivy_450c.codec import END, HEADER, WAVEFORM_BYTES, encode_message
from kernel.vocabulary import NIBP_PARAMS, Param, Sample
from simulators.serial_monitor import Frame

__all__ = ["IvySide"]


def _waveforms() -> bytes:
    """One second of plausible waveforms: ECG beats at 200 Hz, then four 50 Hz curves."""
    ecg = [
        0x80 + (90 if k % 200 in (40, 41) else -20 if k % 200 in (43, 44) else 0)
        for k in range(200)
    ]
    slow = [round(0x80 + 60 * math.sin(2 * math.pi * k / 50)) for k in range(50)]
    return bytes(ecg + slow * 4)


_WAVES: Final = _waveforms()
assert len(_WAVES) == WAVEFORM_BYTES


@dataclass
class IvySide:
    """An Ivy 450C with ECG, SpO2 and NIBP modules, its ANSAR-B output on.

    The NIBP line repeats the last determination every second, as the monitor's display does.
    """

    _nibp: tuple[float, float, float] | None = None

    def receive(self, data: bytes, now: float) -> list[bytes]:  # noqa: ARG002 - MonitorSide
        """ANSAR-B is output only: whatever the host sends is ignored."""
        return []

    def second(self, samples: Sequence[Sample], now: float) -> list[bytes]:  # noqa: ARG002
        """This second's message: HR, SpO2 and PR, and the NIBP determination on display."""
        values = {s.param: s.value for s in samples}
        new_cuff = values.keys() >= NIBP_PARAMS
        if new_cuff:
            self._nibp = (values[Param.NIBP_SYS], values[Param.NIBP_DIA], values[Param.NIBP_MEAN])
        message = encode_message(
            hr=values.get(Param.HR),
            spo2=values.get(Param.SPO2),
            pr=values.get(Param.PR),
            nibp=self._nibp,
            waveform=_WAVES,
        )
        carried = sum(
            math.isfinite(values.get(p, math.nan)) for p in (Param.HR, Param.SPO2, Param.PR)
        )
        return [Frame(message, carried + (3 if new_cuff else 0))]

    def corrupt(self, frame: bytes, rng: random.Random) -> bytes:
        """One byte of the text part with its top bit set, as a framing error leaves it.

        ANSAR-B has no checksum: damage to the waveform block cannot be detected by a receiver,
        so the damage goes where it can.
        """
        start = len(HEADER) + WAVEFORM_BYTES
        end = frame.rfind(bytes((END,)))
        i = rng.randrange(start, max(start + 1, end))
        return frame[:i] + bytes([frame[i] | 0x80]) + frame[i + 1 :]
