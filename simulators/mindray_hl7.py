"""The device half of a Mindray monitor's HL7 output: the parameter groups of every second.

Reuses `drivers.mindray_hl7.codec.encode_group`, so the simulator and the driver agree by
construction; the parser is tested on messages written by hand from public captures of the
dialect (docs/devices.md §3.1).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from drivers.mindray_hl7.codec import encode_group
from kernel.mllp import END, START, MllpDecoder
from kernel.vocabulary import NIBP_PARAMS, Param, Sample
from simulators.serial_monitor import Frame

__all__ = ["MindraySide"]


@dataclass
class MindraySide:
    """A Mindray monitor with ECG, SpO2 and NIBP, its HL7 output on.

    Every second: the ECG group (HR) and the SpO2 group (SpO2, PR), each with its state
    message; the NIBP group after each determination. `accept_ack` is sent in MSH-15 ("AL" to
    have every message acknowledged); the ACKs received are counted in `acks`.
    """

    accept_ack: str = ""
    acks: int = 0
    _decoder: MllpDecoder = field(default_factory=MllpDecoder)

    def receive(self, data: bytes, now: float) -> list[bytes]:  # noqa: ARG002 - MonitorSide
        """The host's ACKs: counted, never answered."""
        self.acks += sum(1 for body in self._decoder.feed(data) if b"\rMSA|" in body)
        return []

    def second(self, samples: Sequence[Sample], now: float) -> list[bytes]:  # noqa: ARG002
        """This second's messages (module docstring)."""
        values = {s.param: s.value for s in samples}
        groups: list[tuple[int, list[tuple[int, str, float | None]]]] = []
        if Param.HR in values:
            groups.append((2101, [(101, "HR", values[Param.HR])]))
        if Param.SPO2 in values or Param.PR in values:
            spo2 = (160, "SpO2", values.get(Param.SPO2))
            groups.append((2103, [spo2, (161, "PR", values.get(Param.PR))]))
        if values.keys() >= NIBP_PARAMS:
            groups.append(
                (
                    2105,
                    [
                        (170, "NIBP S", values[Param.NIBP_SYS]),
                        (171, "NIBP D", values[Param.NIBP_DIA]),
                        (172, "NIBP M", values[Param.NIBP_MEAN]),
                    ],
                )
            )
        out: list[bytes] = []
        for group, observations in groups:
            data, states = encode_group(group, observations, accept_ack=self.accept_ack)
            carried = sum(v is not None and math.isfinite(v) for _, _, v in observations)
            out += [Frame(data, carried), states]
        return out

    def corrupt(self, frame: bytes, rng: random.Random) -> bytes:
        """One byte of the message with its top bit set: HL7 2.3.1 text is ASCII."""
        start = len(START)
        i = rng.randrange(start, max(start + 1, len(frame) - len(END)))
        return frame[:i] + bytes([frame[i] | 0x80]) + frame[i + 1 :]
