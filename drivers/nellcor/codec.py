"""Sans-I/O codec for the Nellcor N-595 / N-560 ASCII real-time output (docs/devices.md §2.6).

The oximeter prints lines ended by CR LF at 9600 8N1, a data line every 2 s, and repeats its
column heading every 25 lines and whenever a heading value (a limit) changes::

    N-595 VERSION 1.6.0.0 CRC:A7B2 SpO2 Limit: 85-100% PR Limit: 50-120BPM
    ADULT  0SAT-S  SPO2 RESP MODE: NORMAL
    TIME                %SPO2  BPM   PA  Status
    02-DEC-26 17:35:20    98    72   45
    02-DEC-26 17:35:22    84*   72   45  SL
    02-DEC-26 17:35:24   ---   ---  ---  SO

A data line is the oximeter's date and time (``dd-MMM-yy HH:mm:ss``, its local wall time),
SpO2 (%), pulse rate (BPM, Vigil's ``PR``) and pulse amplitude (PA, not in Vigil's vocabulary),
then two-letter status codes. ``---`` is a missing value; ``*`` after a value marks it outside
the oximeter's alarm limits (the value stands: the limits are the oximeter's, Vigil's alarms are
its own). Status codes that say the reading cannot be trusted (sensor off or disconnected, loss
of pulse, interference, pulse search) make the line's samples invalid with the condition as
reason; the others (alarm silenced or off, low battery, limit alarms) are kept with the line.

The heading lines are recognised and carry no samples; they keep the device alive like data
lines do. Anything else is dropped and counted: a line that is none of these (``malformed``),
a control or non-ASCII byte (``not_ascii``), an over-long line (``too_long``); an unknown status
code is counted (``unknown_status``) and the line kept. A data line cut short and run into the
next is resynchronised at the last date and time in it (``truncated``), bytes before a date and
time that begin no line are ``garbage``.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from drivers.base import DriverStats
from drivers.lines import StampedLineLink, StampedLines
from drivers.samples import judged
from kernel.vocabulary import Param, Sample

__all__ = [
    "INVALIDATING",
    "MAX_LINE",
    "STATUS_CODES",
    "DropReason",
    "LineDecoder",
    "NellcorLink",
    "NellcorReading",
    "decode_capture",
    "encode_heading",
    "encode_reading",
    "parse_line",
    "reading_samples",
]

# A heading line is ~75 bytes; far longer is not a line of this output.
MAX_LINE: Final = 256

# docs/devices.md §2.6 (the operator's manuals' data port appendix; OpenICE's n595 spec).
STATUS_CODES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "AO": "alarm_off",
        "AS": "alarm_silenced",
        "LB": "low_battery",
        "LM": "loss_of_pulse_interference",
        "LP": "loss_of_pulse",
        "MO": "interference",
        "PH": "pr_upper_limit",
        "PL": "pr_lower_limit",
        "PS": "pulse_search",
        "SD": "sensor_disconnected",
        "SH": "spo2_upper_limit",
        "SL": "spo2_lower_limit",
        "SO": "sensor_off",
    }
)
# the conditions under which the oximeter's numbers are not a reading of the patient, in the
# order that names the reason when several are present
INVALIDATING: Final = ("SD", "SO", "LP", "LM", "MO", "PS")


class DropReason(StrEnum):
    """Why a line was dropped, or what was noted on a kept one (the drop counter's label)."""

    TOO_LONG = "too_long"
    NOT_ASCII = "not_ascii"
    MALFORMED = "malformed"
    TRUNCATED = "truncated"
    GARBAGE = "garbage"  # bytes before a line's date and time that begin no line
    UNKNOWN_STATUS = "unknown_status"  # noted; the line is kept


_MONTHS: Final = (
    "JAN",
    "FEB",
    "MAR",
    "APR",
    "MAY",
    "JUN",
    "JUL",
    "AUG",
    "SEP",
    "OCT",
    "NOV",
    "DEC",
)
_STAMP = re.compile(rb"(\d{2})-([A-Za-z]{3})-(\d{2}) (\d{2}):(\d{2}):(\d{2})")
_VALUE = r"(---|\d{1,3}\*?)"
_DATA = re.compile(rf"\s+{_VALUE}\s+{_VALUE}\s+{_VALUE}((?:\s+[A-Z]{{2}})*)\s*")
_HEADINGS = (
    re.compile(r"\S+\s+VERSION\s+\S+.*"),  # N-595 VERSION 1.6.0.0 CRC:A7B2 SpO2 Limit: ...
    re.compile(r"\s*(ADULT|NEO)\s+\d+SAT-S\s+SPO2 RESP MODE:\s+\w+.*"),
    re.compile(r"\s*TIME\s+%SPO2\s+BPM\s+PA(\s+Status)?\s*"),
)
_NOT_TEXT = re.compile(rb"[^\x20-\x7e]")


@dataclass(frozen=True, slots=True)
class NellcorReading:
    """One data line: its time, the values (None for ``---``) and the status codes."""

    stamp: dt.datetime
    spo2: float | None
    pr: float | None
    pa: float | None
    status: tuple[str, ...]
    beyond_limits: frozenset[str] = frozenset()  # "SPO2", "PR", "PA" marked with *

    @property
    def problem(self) -> str | None:
        """The reason the readings cannot be trusted, if a status code says so."""
        for code in INVALIDATING:
            if code in self.status:
                return STATUS_CODES[code]
        return None


def _value(raw: str) -> tuple[float | None, bool]:
    if raw == "---":
        return None, False
    return float(raw.rstrip("*")), raw.endswith("*")


def parse_line(line: bytes) -> NellcorReading | DropReason | None:
    """A data line's reading; None for a heading line; the reason for anything else."""
    if _NOT_TEXT.search(line) is not None:
        return DropReason.NOT_ASCII
    m = _STAMP.match(line)
    text = line.decode("ascii")
    if m is None:
        if any(h.fullmatch(text) for h in _HEADINGS):
            return None
        return DropReason.MALFORMED
    day, month, year, hour, minute, second = m.groups()
    try:
        stamp = dt.datetime(  # noqa: DTZ001 - the oximeter's local wall time, zone unknown
            # two-digit years as POSIX strptime reads them: 69-99 are 19xx, 00-68 are 20xx
            int(year) + (1900 if int(year) >= 69 else 2000),
            _MONTHS.index(month.decode("ascii").upper()) + 1,
            int(day),
            int(hour),
            int(minute),
            int(second),
        )
    except ValueError:
        return DropReason.MALFORMED
    rest = _DATA.fullmatch(text[m.end() :])
    if rest is None:
        return DropReason.MALFORMED
    (spo2, spo2_star), (pr, pr_star), (pa, pa_star) = (_value(rest.group(i)) for i in (1, 2, 3))
    stars = {n for n, s in (("SPO2", spo2_star), ("PR", pr_star), ("PA", pa_star)) if s}
    return NellcorReading(stamp, spo2, pr, pa, tuple(rest.group(4).split()), frozenset(stars))


def reading_samples(reading: NellcorReading, *, t: float, device_id: str) -> tuple[Sample, ...]:
    """The SpO2 and pulse-rate samples of a reading, stamped `t` (epoch seconds UTC).

    ``---`` gives an invalid sample (``no_value``, or the status condition when there is one);
    an invalidating status makes both invalid with its name as reason.
    """
    problem = reading.problem
    out = []
    for param, value in ((Param.SPO2, reading.spo2), (Param.PR, reading.pr)):
        number = math.nan if value is None else value
        sample, _ = judged(
            t, param, number, device_id, valid=problem is None and value is not None, reason=problem
        )
        out.append(sample)
    return tuple(out)


class LineDecoder(StampedLines[NellcorReading]):
    """Splits the byte stream into lines and parses them; resyncs on garbage, counts drops.

    `feed` takes any chunk and returns the readings of the data lines it completed. Every
    recognised line (data or heading) counts in ``stats.frames`` (the framing is
    `drivers.lines.StampedLines`); a status code the codec does not know is counted as
    ``unknown_status``.
    """

    def __init__(self, stats: DriverStats | None = None) -> None:
        super().__init__(_STAMP, parse_line, MAX_LINE, DriverStats() if stats is None else stats)

    def feed(self, data: bytes) -> list[NellcorReading]:
        """Add received bytes; return the readings of the lines they completed."""
        readings = super().feed(data)
        for reading in readings:
            unknown = [c for c in reading.status if c not in STATUS_CODES]
            if unknown:
                self.stats.drop(DropReason.UNKNOWN_STATUS, len(unknown))
        return readings


def _field(value: float | None, *, star: bool = False) -> str:
    if value is None or math.isnan(value):
        return "---"
    return f"{round(value)}{'*' if star else ''}"


def encode_reading(
    *,
    stamp: dt.datetime,
    spo2: float | None,
    pr: float | None,
    pa: float | None = 45.0,
    status: tuple[str, ...] = (),
    beyond_limits: frozenset[str] = frozenset(),
) -> bytes:
    """A data line as the oximeter prints it, with CR LF (for the simulator and tests)."""
    head = f"{stamp.day:02d}-{_MONTHS[stamp.month - 1]}-{stamp.year % 100:02d} {stamp:%H:%M:%S}"
    cells = [
        f"{_field(spo2, star='SPO2' in beyond_limits):>6}",
        f"{_field(pr, star='PR' in beyond_limits):>6}",
        f"{_field(pa, star='PA' in beyond_limits):>5}",
    ]
    codes = "".join(f"  {c}" for c in status)
    return f"{head}{''.join(cells)}{codes}\r\n".encode("ascii")


def encode_heading(
    *,
    model: str = "N-595",
    spo2_limits: tuple[int, int] = (85, 100),
    pr_limits: tuple[int, int] = (50, 120),
) -> bytes:
    """The column heading the oximeter prints every 25 lines (for the simulator and tests)."""
    lo, hi = spo2_limits
    plo, phi = pr_limits
    return (
        f"{model} VERSION 1.6.0.0 CRC:A7B2 SpO2 Limit: {lo}-{hi}% PR Limit: {plo}-{phi}BPM\r\n"
        "ADULT  0SAT-S  SPO2 RESP MODE: NORMAL\r\n"
        "TIME                %SPO2  BPM   PA  Status\r\n"
    ).encode("ascii")


class NellcorLink(StampedLineLink[NellcorReading]):
    """The `drivers.link.LinkProtocol` of the ASCII output: the oximeter talks, the host listens.

    Samples are stamped with the receive time (`now`), as for every device without a clock of
    its own the daemon can trust (the oximeter's clock is set by hand and has no zone).
    """

    def lines(self) -> LineDecoder:
        """A fresh line decoder counting into `stats`."""
        return LineDecoder(self.stats)

    def samples(self, record: NellcorReading, *, t: float) -> tuple[Sample, ...]:
        """The reading's SpO2 and pulse-rate samples (`reading_samples`)."""
        return reading_samples(record, t=t, device_id=self.device_id)


def decode_capture(data: bytes, *, device_id: str) -> tuple[list[Sample], DriverStats]:
    """The samples of a raw capture, each at its line's own time (`StampedLineLink`)."""
    return NellcorLink(device_id, DriverStats()).decode_capture(data)
