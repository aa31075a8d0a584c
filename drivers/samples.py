"""Samples as every codec builds them: the device's verdict, the range check, units, MDC code.

Pure functions (docs/DESIGN.md P1). A codec calls `judged` for every value it decodes, so all
devices mark missing and out-of-range values the same way (docs/ALARMS.md "Vocabulary"), which
keeps a live session and its replay identical.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Final

from kernel.vocabulary import MDC_CODES, UNITS, Param, Sample, in_range

__all__ = ["NO_VALUE", "OUT_OF_RANGE", "DeterminationMemory", "judged", "verdict"]

NO_VALUE: Final = "no_value"
OUT_OF_RANGE: Final = "out_of_range"


def verdict(
    param: Param, value: float, *, device_valid: bool, device_reason: str | None
) -> tuple[bool, str | None, bool]:
    """(valid, reason, out_of_range) for a value the device called `device_valid`.

    The device's own "invalid" and its reason stand. A value the device called valid is
    invalid when it is missing ("no_value") or outside the physiological range
    ("out_of_range", the third element tells the caller to count it).
    """
    return _verdict(param, value, device_valid, device_reason)


# A pure function of a few values that recur every second (a monitor's HR moves by a beat or
# two): remembered, so a decode does not judge the same reading again (bench/decode.py). NaN is
# never equal to itself and so never found, which only costs a slot of the bounded cache.
@functools.lru_cache(maxsize=4096)
def _verdict(
    param: Param,
    value: float,
    device_valid: bool,  # noqa: FBT001 - positional: the cache's key is made faster
    device_reason: str | None,
) -> tuple[bool, str | None, bool]:
    if not device_valid:
        derived = NO_VALUE if math.isnan(value) else None
        if derived is None and not in_range(param, value):
            derived = OUT_OF_RANGE
        return False, device_reason if device_reason is not None else derived, False
    if math.isnan(value):
        return False, NO_VALUE, False
    if not in_range(param, value):
        return False, OUT_OF_RANGE, True
    return True, device_reason, False


def judged(
    t: float, param: Param, value: float, device_id: str, *, valid: bool, reason: str | None
) -> tuple[Sample, bool]:
    """The sample, with the verdict of `verdict`, units and MDC code; and out_of_range."""
    ok, why, out_of_range = _verdict(param, value, valid, reason)
    sample = Sample(t, param, value, ok, device_id, UNITS[param], MDC_CODES[param], why)
    return sample, out_of_range


@dataclass
class DeterminationMemory:
    """The last cuff determination passed on, for protocols that repeat it without a time.

    A monitor that shows the last NIBP determination in every message (Ivy 450C ANSAR-B,
    docs/devices.md §2.5) or resends it (Mindray HL7, §3.1) gives no measurement time to tell a
    new determination from the displayed one: a determination is new when its (sys, dia, mean)
    differ from the last one passed on, so two in a row with the very same values are one.
    Kept by a driver across reconnections, so a reconnect does not pass the displayed
    determination on again.
    """

    last: tuple[float, float, float] | None = None

    def is_new(self, values: tuple[float, float, float]) -> bool:
        """Whether `values` is a new determination (then it is remembered)."""
        if values == self.last:
            return False
        self.last = values
        return True
