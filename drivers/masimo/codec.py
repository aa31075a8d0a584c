"""Sans-I/O codec for the Masimo "ASCII 1" serial output (Radical-5/7, Rad-8, Rad-87).

The monitor sends one ASCII line a second, ended by CR LF (docs/devices.md §2.1)::

    02/15/24 14:03:22 SN=0000012345 SPO2=098% BPM=072 PI=03.60% SPCO=--.-% SPMET=--.-%
    DESAT=-- PIDELTA=+-- PVI=012 ALARM=0000 EXC=000800

(one line on the wire). The field set differs by model and software (Radical-5 sends
``SPO2 BPM PI ALARM EXC`` with 2 and 3 hex digits; Rad-8 and older Radical-7 add ``SN SPCO SPMET
DESAT PIDELTA [PVI]`` with 4 and 6 hex digits; the Radical-7 "color" build adds ``SPHB SPOC RESVD``
and ``EXC1``), so a line is read as ``KEY=VALUE`` tokens, never by column. Units are glued to
values (``098%``, ``03.60%``) and a missing value is dashes (``---``, ``--.-``, ``+--``).

ASCII 1 has no checksum. What a receiver *can* reject, this codec does: a line without the
leading date and time, a token that is not ``KEY=VALUE``, a key twice, a value that is neither a
number in the key's form nor dashes, a control or non-ASCII byte (what a UART framing error or a
line hit leaves), and an over-long line. A flipped bit that turns one digit into another is
undetectable by any receiver of this format. A line cut short and followed by the next one is
resynchronised at the last date and time in it (`LineDecoder`).

Decoded: SpO2 (``SPO2``, %), pulse rate (``BPM``, /min, Vigil's ``PR``), perfusion index (``PI``,
kept in the record; Vigil's vocabulary has no PI parameter), PVI, and the ``ALARM`` and ``EXC``
bit fields (MD PnP ``poxrad_discrete.h``; bits 0-5 of ALARM confirmed by experiment in
``remkolems/masimo-datacapture``). A sensor problem in ``EXC`` (`INVALIDATING`) makes the line's
samples invalid and names the condition in the sample's ``reason``.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from drivers.base import DriverStats
from drivers.lines import StampedLineLink, StampedLines
from drivers.samples import judged
from kernel.vocabulary import Param, Sample

__all__ = [
    "ALARM_BITS",
    "EXC_BITS",
    "INVALIDATING",
    "MAX_LINE",
    "DropReason",
    "LineDecoder",
    "MasimoLink",
    "MasimoRecord",
    "decode_capture",
    "encode_line",
    "parse_line",
    "record_samples",
]

# A Radical-7 "color" line is ~200 bytes; anything far longer is not one line of this protocol.
MAX_LINE: Final = 512


class DropReason(StrEnum):
    """Why a line was dropped (the `reason` label of the drop counter)."""

    TOO_LONG = "too_long"  # no line end within MAX_LINE bytes
    NOT_ASCII = "not_ascii"  # a byte outside printable ASCII (framing error, line noise)
    NO_TIMESTAMP = "no_timestamp"  # does not start with MM/DD/YY HH:MM:SS
    MALFORMED = "malformed"  # a token that is not KEY=VALUE, a key twice, a bad value
    NO_FIELDS = "no_fields"  # a time stamp and no SPO2, BPM or EXC: not an ASCII 1 line
    TRUNCATED = "truncated"  # the start of a line cut short, followed by a whole line
    # bytes before a line's time stamp that begin no line (line noise, or the tail of a line
    # whose start was missed), on the same line as it
    GARBAGE = "garbage"


# ALARM bit field (MD PnP poxrad_discrete.h `alarmmessage`).
ALARM_BITS: Final[Mapping[int, str]] = MappingProxyType(
    {
        0x0001: "spo2_high",
        0x0002: "spo2_low",
        0x0004: "pr_high",
        0x0008: "pr_low",
        0x0010: "alarm_active",
        0x0020: "alarm_silenced",
        0x0040: "low_battery",
        0x0100: "spco_high",
        0x0200: "spco_low",
        0x0400: "spmet_high",
        0x0800: "spmet_low",
        0x1000: "desat_index",
        0x2000: "pi_rate_of_change",
    }
)

# EXC bit field (MD PnP poxrad_discrete.h `exceptionmessage`; Rad-8 manual subset).
EXC_BITS: Final[Mapping[int, str]] = MappingProxyType(
    {
        0x0001: "no_sensor",
        0x0002: "defective_sensor",
        0x0004: "low_perfusion",
        0x0008: "pulse_search",
        0x0010: "interference",
        0x0020: "sensor_off",
        0x0040: "ambient_light",
        0x0080: "unrecognized_sensor",
        0x0100: "incompatible_sensor",
        0x0400: "low_signal_iq",
        0x0800: "masimo_set",
        0x1000: "no_cable",
    }
)

# Conditions under which the monitor's SpO2 and pulse rate are not readings of the patient: no
# or a faulty sensor, the sensor off the finger, the search for a pulse, or a signal the
# monitor itself flags as unreliable (IEC 80601-2-61 technical alarm conditions). "masimo_set"
# only says the SET algorithm is on.
INVALIDATING: Final = frozenset(
    {
        "no_sensor",
        "defective_sensor",
        "low_perfusion",
        "pulse_search",
        "interference",
        "sensor_off",
        "ambient_light",
        "unrecognized_sensor",
        "incompatible_sensor",
        "low_signal_iq",
        "no_cable",
    }
)

_PRINTABLE: Final = bytes(range(0x20, 0x7F))
_STAMP = re.compile(rb"(\d\d)/(\d\d)/(\d\d) (\d\d):(\d\d):(\d\d)")
_KEY = re.compile(r"[A-Z][A-Z0-9]*")
_NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?")
_DASHES = re.compile(r"[+-]?[-.]*-[-.]*")
_HEX = re.compile(r"[0-9A-Fa-f]{1,8}")
# What may follow a number: the unit Masimo glues to it.
_UNITS: Final = ("%", "")
_HEX_KEYS: Final = frozenset({"ALARM", "EXC", "EXC1"})
_TEXT_KEYS: Final = frozenset({"SN"})


@dataclass(frozen=True, slots=True)
class MasimoRecord:
    """One decoded ASCII 1 line.

    `stamp` is the monitor's own clock as sent (``MM/DD/YY HH:MM:SS``, no zone); Vigil stamps
    samples with its own clock instead, because the monitor's drifts and has no zone.
    Numbers are None when the monitor sent dashes or omitted the field.
    """

    stamp: dt.datetime
    fields: Mapping[str, str]
    spo2: float | None = None
    pr: float | None = None
    pi: float | None = None
    pvi: float | None = None
    alarm: int = 0
    exc: int = 0
    alarms: tuple[str, ...] = ()
    conditions: tuple[str, ...] = field(default=())

    @property
    def problem(self) -> str | None:
        """The first `INVALIDATING` condition in `EXC` (the samples' reason), or None."""
        for name in self.conditions:
            if name in INVALIDATING:
                return name
        return None


def _bits(value: int, names: Mapping[int, str]) -> tuple[str, ...]:
    out = []
    while value:
        mask = value & -value  # the lowest bit set
        out.append(names.get(mask, f"bit_0x{mask:x}"))
        value ^= mask
    return tuple(out)


def _number(raw: str) -> float | DropReason | None:
    """A value as Masimo prints it: a number with its glued unit, or dashes (None)."""
    text = raw.removesuffix("%")
    if _DASHES.fullmatch(text):
        return None
    if not _NUMBER.fullmatch(text):
        return DropReason.MALFORMED
    return float(text)


def _stamp(line: bytes) -> tuple[dt.datetime, int] | DropReason:
    """The monitor's date and time at the start of `line`, and where the tokens begin."""
    match = _STAMP.match(line)
    if match is None:
        return DropReason.NO_TIMESTAMP
    month, day, year, hour, minute, second = (int(g) for g in match.groups())
    try:
        return dt.datetime(2000 + year, month, day, hour, minute, second), match.end()  # noqa: DTZ001
    except ValueError:
        return DropReason.NO_TIMESTAMP


def _tokens(text: str) -> tuple[dict[str, str], dict[str, float | None]] | DropReason:
    """The line's ``KEY=VALUE`` tokens as text, and the numeric ones parsed."""
    fields: dict[str, str] = {}
    numbers: dict[str, float | None] = {}
    for token in text.split():
        key, sep, value = token.partition("=")
        if not sep or not _KEY.fullmatch(key) or key in fields or not value:
            return DropReason.MALFORMED
        fields[key] = value
        if key in _HEX_KEYS:
            if not _HEX.fullmatch(value):
                return DropReason.MALFORMED
        elif key not in _TEXT_KEYS:
            parsed = _number(value)
            if isinstance(parsed, DropReason):
                return parsed
            numbers[key] = parsed
    return fields, numbers


def parse_line(line: bytes) -> MasimoRecord | DropReason:
    """Decode one line (without its CR LF); a `DropReason` if it is not an ASCII 1 line."""
    if line.translate(None, _PRINTABLE):
        return DropReason.NOT_ASCII
    stamped = _stamp(line)
    if isinstance(stamped, DropReason):
        return stamped
    stamp, start = stamped
    parsed = _tokens(line[start:].decode("ascii"))
    if isinstance(parsed, DropReason):
        return parsed
    fields, numbers = parsed
    if not fields.keys() & {"SPO2", "BPM", "EXC"}:
        return DropReason.NO_FIELDS
    alarm = int(fields.get("ALARM", "0"), 16)
    exc = int(fields.get("EXC", "0"), 16)
    return MasimoRecord(
        stamp=stamp,
        fields=MappingProxyType(fields),
        spo2=numbers.get("SPO2"),
        pr=numbers.get("BPM"),
        pi=numbers.get("PI"),
        pvi=numbers.get("PVI"),
        alarm=alarm,
        exc=exc,
        alarms=_bits(alarm, ALARM_BITS),
        conditions=_bits(exc, EXC_BITS),
    )


def record_samples(record: MasimoRecord, *, t: float, device_id: str) -> tuple[Sample, ...]:
    """The SpO2 and pulse-rate samples of a record, stamped `t` (epoch seconds UTC).

    A field the line did not have gives no sample; dashes give an invalid sample (the monitor
    shows no value). An `EXC` sensor problem makes both invalid with its name as reason.
    """
    problem = record.problem
    out = []
    for key, param, value in (("SPO2", Param.SPO2, record.spo2), ("BPM", Param.PR, record.pr)):
        if key not in record.fields:
            continue
        number = math.nan if value is None else value
        sample, _ = judged(
            t, param, number, device_id, valid=problem is None and value is not None, reason=problem
        )
        out.append(sample)
    return tuple(out)


class LineDecoder(StampedLines[MasimoRecord]):
    """Splits a byte stream into lines and decodes them; resyncs on garbage, counts drops.

    `feed` takes any chunk (a line may arrive in pieces) and returns the records of the lines
    it completed. Every complete valid line counts in ``stats.frames``; every dropped piece in
    ``stats.dropped`` by `DropReason` (the framing is `drivers.lines.StampedLines`).
    """

    def __init__(self, stats: DriverStats | None = None) -> None:
        super().__init__(
            _STAMP, parse_line, MAX_LINE, DriverStats() if stats is None else stats, blank=b" \r"
        )


def _field(value: float | None, width: int, decimals: int = 0, unit: str = "") -> str:
    if value is None or math.isnan(value):
        if not decimals:
            return "-" * width + unit
        return "-" * (width - decimals - 1) + "." + "-" * decimals + unit
    return f"{value:0{width}.{decimals}f}{unit}"


def encode_line(
    *,
    stamp: dt.datetime,
    spo2: float | None,
    pr: float | None,
    pi: float | None = None,
    pvi: float | None = None,
    alarm: int = 0,
    exc: int = 0x800,
    model: str = "rad8",
) -> bytes:
    """An ASCII 1 line as `model` sends it, with CR LF (for the simulator and tests).

    Models: ``radical5`` (``SPO2 BPM PI ALARM(2) EXC(3)``), ``rad8`` (Rad-8 and older
    Radical-7: ``SN SPO2 BPM PI SPCO SPMET DESAT PIDELTA ALARM(4) EXC(6)``), ``rad8-pvi`` (the
    same with ``PVI`` before ``ALARM``). Values are rounded as the monitor displays them.
    """
    head = stamp.strftime("%m/%d/%y %H:%M:%S")
    spo2_f = _field(None if spo2 is None else round(spo2), 3, unit="%")
    pr_f = _field(None if pr is None else round(pr), 3)
    pi_f = _field(pi, 5, 2, "%")
    if model == "radical5":
        tokens = [f"SPO2={spo2_f}", f"BPM={pr_f}", f"PI={pi_f}"]
        tokens += [f"ALARM={alarm:02X}", f"EXC={exc:03X}"]
    elif model in {"rad8", "rad8-pvi"}:
        tokens = [
            "SN=0000012345",
            f"SPO2={spo2_f}",
            f"BPM={pr_f}",
            f"PI={pi_f}",
            "SPCO=--.-%",
            "SPMET=--.-%",
            "DESAT=--",
            "PIDELTA=+--",
        ]
        if model == "rad8-pvi":
            tokens.append(f"PVI={_field(None if pvi is None else round(pvi), 3)}")
        tokens += [f"ALARM={alarm:04X}", f"EXC={exc:06X}"]
    else:
        raise ValueError(f"unknown Masimo model {model!r} (radical5, rad8, rad8-pvi)")
    return (head + " " + " ".join(tokens) + "\r\n").encode("ascii")


class MasimoLink(StampedLineLink[MasimoRecord]):
    """The `drivers.link.LinkProtocol` of ASCII 1: the monitor talks, the host listens."""

    def lines(self) -> LineDecoder:
        """A fresh line decoder counting into `stats`."""
        return LineDecoder(self.stats)

    def samples(self, record: MasimoRecord, *, t: float) -> tuple[Sample, ...]:
        """The line's SpO2 and pulse-rate samples (`record_samples`)."""
        return record_samples(record, t=t, device_id=self.device_id)


def decode_capture(data: bytes, *, device_id: str) -> tuple[list[Sample], DriverStats]:
    """The samples of a raw capture, each at its line's own time (`StampedLineLink`)."""
    return MasimoLink(device_id, DriverStats()).decode_capture(data)
