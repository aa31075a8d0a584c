"""The device half of the GE S/5 computer interface: displayed values on request, every 5 s.

Reuses `drivers.ge_s5.codec` (the driver's de-framer to read requests, its record and frame
encoders to answer), so the simulator and the driver agree by construction on the format; the
driver's decoder is tested separately on records built by hand from the documented layout.

What the monitor does (docs/ge_s5.md §6): nothing until a valid displayed-values request
arrives ([CI] §3-5); then one record every ``tx_ival`` seconds of scenario time; a stop request
(``tx_ival`` 0) ends it; a single-shot request (``tx_ival`` -1) is answered at once unless the
previous request came less than 5 s before. Only the BASIC class is served.

NIBP (docs/ge_s5.md §4.4, §7.1): the NIBP group shows the scenario's latest determination with the
label's "measuring" bit clear and its "data older than 60 s" bit clear until 60 s after the
determination, then set; before the first determination the values are DATA_INVALID. This is
what the driver's `NibpTracker` reads as one new determination per scenario determination.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from drivers.base import DriverStats
from drivers.ge_s5.codec import (
    ABSENT_PRESSURES,
    CLASS_DENY_BASIC,
    DATA_INVALID,
    ESC,
    FLAG,
    NIBP_AUTO,
    NIBP_OLD,
    SR_DISPL,
    STATUS_ACTIVE,
    STATUS_EXISTS,
    BasicValues,
    FrameDecoder,
    Group,
    absent,
    encode_displayed_record,
    encode_frame,
    parse_request,
)
from kernel.vocabulary import Param, Sample
from simulators.serial_monitor import Frame

__all__ = ["GeS5Side"]


_ON: Final = STATUS_EXISTS | STATUS_ACTIVE
_ECG_STATUS: Final = _ON | (1 << 3)  # HR source 1: ECG ([DRI] Table 3-10)
_ART: Final = 1  # IBP label code ART ([DRI] Table 3-16)
_NIBP_OLD_AFTER_S: Final = 60.0  # [DRI] Table 3-18: bit 8 once the measurement ended 60 s ago
_REPEAT_S: Final = 5.0  # [CI] p.7: a request within 5 s of the previous one is ignored


def _raw(value: float | None, scale: int) -> int:
    """A value as the monitor sends it (1/`scale` units); DATA_INVALID when missing."""
    if value is None or math.isnan(value):
        return DATA_INVALID
    return round(value * scale)


@dataclass
class GeS5Side:
    """A GE S/5 monitor with ECG, SpO2 and NIBP modules; P1 labelled ART but not plugged in.

    `dri_level` is sent in every record header (11, the '15 level of CARESCAPE monitors).
    """

    dri_level: int = 11
    stats: DriverStats = field(default_factory=DriverStats)

    def __post_init__(self) -> None:
        self._decoder = FrameDecoder(self.stats)
        self._interval: int | None = None
        self._due = -math.inf
        self._last_request = -math.inf
        self._r_nbr = 0
        self._latest: dict[Param, float] = {}
        self._cuff: tuple[float, float, float] | None = None
        self._cuff_t = -math.inf
        # parameters whose latest value no record has carried yet (`Frame.samples`)
        self._fresh: set[Param] = set()

    def receive(self, data: bytes, now: float) -> list[bytes]:
        """Act on the host's requests; a single-shot request is answered at once."""
        out: list[bytes] = []
        for record in self._decoder.feed(data):
            request = parse_request(record)
            if request is None or request.rcrd_type != SR_DISPL:
                continue  # trends are not simulated
            repeat = now - self._last_request < _REPEAT_S
            self._last_request = now
            if request.tx_ival == 0:
                self._interval = None
            elif request.tx_ival == -1:
                if not repeat and not request.class_bf & CLASS_DENY_BASIC:
                    out.append(self._record(now))
            elif (
                request.tx_ival >= 5
                and not request.class_bf & CLASS_DENY_BASIC
                and self._interval != request.tx_ival
            ):
                # a repeat of the running request keeps its schedule
                self._interval = request.tx_ival
                self._due = now
            # tx_ival 1..4 is not allowed for displayed values ([CI] p.7): ignored
        return out

    def second(self, samples: Sequence[Sample], now: float) -> list[bytes]:
        """Take this second's values; a record if one is due."""
        for sample in samples:
            self._latest[sample.param] = sample.value if sample.valid else math.nan
            if sample.valid and math.isfinite(sample.value):
                self._fresh.add(sample.param)
        cuff = [s.value for s in samples if s.param in {Param.NIBP_SYS, Param.NIBP_DIA}]
        if len(cuff) == 2:
            mean = self._latest.get(Param.NIBP_MEAN, math.nan)
            self._cuff = (cuff[0], cuff[1], mean)
            self._cuff_t = now
        if self._interval is None or now < self._due:
            return []
        while self._due <= now:
            self._due += self._interval
        return [self._record(now)]

    def corrupt(self, frame: bytes, rng: random.Random) -> bytes:
        """One byte between the flags changed to another ordinary byte: a checksum error.

        Escape pairs and flags are left alone, so the frame keeps its boundaries and length
        and only the checksum can tell (a changed byte shifts the byte sum by 1 to 255).
        """
        ordinary = [
            i
            for i in range(1, len(frame) - 1)
            if frame[i] not in {FLAG, ESC} and frame[i - 1] != ESC
        ]
        i = rng.choice(ordinary)
        choices = [b for b in range(256) if b not in {FLAG, ESC, frame[i]}]
        return frame[:i] + bytes([rng.choice(choices)]) + frame[i + 1 :]

    def _record(self, now: float) -> bytes:
        latest = self._latest
        hr = latest.get(Param.HR)
        ecg = Group(_ECG_STATUS, 0x0200, (_raw(hr, 1), *(DATA_INVALID,) * 4))  # lead II
        spo2 = Group(
            _ON,
            0,  # SO2 type 0: SpO2
            (
                _raw(latest.get(Param.SPO2), 100),
                _raw(latest.get(Param.PR), 1),
                DATA_INVALID,  # ir_amp
                DATA_INVALID,  # SvO2
            ),
        )
        if self._cuff is None:
            nibp = Group(_ON, NIBP_AUTO, (DATA_INVALID,) * 4)
        else:
            label = NIBP_AUTO
            if now - self._cuff_t > _NIBP_OLD_AFTER_S:
                label |= NIBP_OLD
            sys, dia, mean = (_raw(v, 100) for v in self._cuff)
            nibp = Group(_ON, label, (sys, dia, mean, DATA_INVALID))
        pressures = (absent(4, label=_ART), *ABSENT_PRESSURES[1:])
        basic = BasicValues(ecg=ecg, pressures=pressures, nibp=nibp, spo2=spo2)
        r_time = math.floor(now)
        record = encode_displayed_record(
            basic, r_time=r_time, r_nbr=self._r_nbr, dri_level=self.dri_level
        )
        self._r_nbr = (self._r_nbr + 1) & 0xFF
        carried = self._fresh & {Param.HR, Param.SPO2, Param.PR}
        if self._cuff is not None:
            carried |= self._fresh & {Param.NIBP_SYS, Param.NIBP_DIA, Param.NIBP_MEAN}
        self._fresh -= carried
        return Frame(encode_frame(record), len(carried))
