"""Sans-I/O codec for the Ivy Biomedical 450C "ANSAR-B" serial output (docs/devices.md §2.5).

The monitor sends one message a second, unasked, at 9600 8N1::

    FF | "ANSAR-B " | 400 waveform bytes | ASCII lines, each ended by CR | FE

The waveform block is one second of ECG (200 samples at 200 Hz), respiration, pleth, P1 and P2
(50 samples each at 50 Hz), one unsigned byte per sample, so it may hold any byte, 0xFE and 0xFF
included: the end byte is only looked for after it. Each line is ``NAME=n;v1;…;vn;rest…;``:
the parameter, how many values follow, the values (empty when the monitor has none), then the
parameter's label and alarm fields, e.g. ``HR=1;80;ECG-II-DIAG;``, ``SPO2=1;98;PR=80 ;`` (the pulse
rate rides in the SpO2 line, with the trailing space real monitors send),
``NIBP=4;120;80;93;72;NIBP;;`` (sys, dia, mean, pulse), ``P1=3;118;76;90;ART;;``.

Decoded: HR, SpO2 and PR, NIBP sys/dia/mean, P1 or P2 as the arterial line when labelled ART or
ABP, RR and EtCO2. Temperatures, the other pressure labels (CVP, PA, ...) and the waveforms are
not in Vigil's vocabulary and are skipped (docs/devices.md §2.5). An empty value is a missing
value: the sample is invalid, reason ``no_value``.

ANSAR-B has no checksum and no clock. What a receiver *can* reject, this codec does: a message
whose text has a byte outside printable ASCII (a line hit, a framing error), a line that is not
``NAME=n;`` with n values, a name twice, a message with no end within `MAX_TEXT` bytes, and a
message cut short (the next one starts before its end byte). Bytes before the first message
start are dropped as ``partial``: a capture, or a connection, may begin in the middle of a
message, and a partial message is not a message.

The NIBP line repeats the last determination every second for as long as the monitor shows it,
so `drivers.samples.DeterminationMemory` passes a determination on once, when its values change.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from drivers.base import DriverStats
from drivers.link import Received, UnaskedLink
from drivers.samples import DeterminationMemory, judged
from kernel.vocabulary import Param, Sample

__all__ = [
    "ART_LABELS",
    "END",
    "HEADER",
    "MAX_TEXT",
    "WAVEFORM_BYTES",
    "DropReason",
    "IvyLine",
    "IvyLink",
    "IvyMessage",
    "MessageDecoder",
    "decode_capture",
    "encode_message",
    "message_samples",
    "parse_text",
]

HEADER: Final = b"\xffANSAR-B "
END: Final = 0xFE
WAVEFORM_BYTES: Final = 400  # ECG 200 + RESP 50 + PLETH 50 + P1 50 + P2 50
_TEXT_AT: Final = len(HEADER) + WAVEFORM_BYTES
# A full set of parameter lines is ~150 bytes; far more is not one message of this protocol.
MAX_TEXT: Final = 1024
# the pressure labels that mean an arterial line (docs/devices.md §2.5)
ART_LABELS: Final = frozenset({"ART", "ABP"})

_NOT_TEXT = re.compile(rb"[^\r\n\x20-\x7e]")
_LINE = re.compile(rb"([A-Z][A-Z0-9]*)=(\d{1,2});(.*)")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_PR_FIELD = re.compile(r"PR=(.*)")


class DropReason(StrEnum):
    """Why bytes or a message were dropped (the `reason` label of the drop counter)."""

    PARTIAL = "partial"  # bytes before a message start (mid-message capture, line noise)
    TRUNCATED = "truncated"  # a message cut short: the next one began before its end byte
    TOO_LONG = "too_long"  # no end byte within MAX_TEXT bytes of text
    NOT_ASCII = "not_ascii"  # the text has a byte outside printable ASCII
    MALFORMED = "malformed"  # a line that is not NAME=n; with n values, or a name twice


@dataclass(frozen=True, slots=True)
class IvyLine:
    """One parameter line: its values (None where empty) and the fields after them."""

    name: str
    values: tuple[float | None, ...]
    rest: tuple[str, ...]

    @property
    def label(self) -> str:
        """The label field (the first after the values), stripped; empty when absent."""
        return self.rest[0].strip() if self.rest else ""


@dataclass(frozen=True, slots=True)
class IvyMessage:
    """One ANSAR-B message: the waveform block and the parameter lines by name."""

    waveform: bytes
    lines: Mapping[str, IvyLine]


def _value(raw: str) -> float | DropReason | None:
    text = raw.strip()
    if not text:
        return None
    if _NUMBER.fullmatch(text) is None:
        return DropReason.MALFORMED
    return float(text)


def parse_text(text: bytes) -> dict[str, IvyLine] | DropReason:
    """The parameter lines of a message's text part (what lies between waveforms and FE)."""
    if _NOT_TEXT.search(text) is not None:
        return DropReason.NOT_ASCII
    lines: dict[str, IvyLine] = {}
    for raw in text.split(b"\r"):
        raw_line = raw.strip(b"\n")
        if not raw_line:
            continue
        m = _LINE.fullmatch(raw_line)
        if m is None:
            return DropReason.MALFORMED
        name = m.group(1).decode("ascii")
        n = int(m.group(2))
        fields = m.group(3).decode("ascii").split(";")
        if fields and fields[-1] == "":
            fields.pop()  # the line's closing ';'
        if len(fields) < n or name in lines:
            return DropReason.MALFORMED
        values: list[float | None] = []
        for raw_value in fields[:n]:
            value = _value(raw_value)
            if isinstance(value, DropReason):
                return value
            values.append(value)
        lines[name] = IvyLine(name, tuple(values), tuple(fields[n:]))
    return lines


@dataclass
class MessageDecoder:
    """Splits a byte stream into ANSAR-B messages; resyncs at every message start, counts drops.

    `feed` takes any chunk and returns the messages it completed. Every valid message counts in
    ``stats.frames``; every dropped piece in ``stats.dropped`` by `DropReason`.
    """

    stats: DriverStats = field(default_factory=DriverStats)
    _buffer: bytearray = field(default_factory=bytearray)
    _skipping: bool = False  # a run of bytes before a start is being dropped (counted once)

    def feed(self, data: bytes) -> list[IvyMessage]:
        """Add received bytes; return the messages they completed."""
        out: list[IvyMessage] = []
        buf = self._buffer
        buf += data
        while buf:
            start = buf.find(HEADER)
            if start != 0:
                # keep a tail that may be the beginning of a header
                cut = start if start > 0 else max(0, len(buf) - len(HEADER) + 1)
                if cut:
                    del buf[:cut]
                    self._skip()
                if start < 0:
                    return out
            following = buf.find(HEADER, 1)
            end = buf.find(END, _TEXT_AT)
            if end >= 0 and (following < 0 or end < following):
                message = self._message(bytes(buf[: end + 1]))
                del buf[: end + 1]
                if message is not None:
                    out.append(message)
            elif following > 0:
                self.stats.drop(DropReason.TRUNCATED)
                del buf[:following]
            elif len(buf) - _TEXT_AT > MAX_TEXT:
                self.stats.drop(DropReason.TOO_LONG)
                del buf[:1]  # the next start, if any, is searched for again
                self._skipping = True  # what follows up to it belongs to this message
            else:
                return out
        return out

    @property
    def pending(self) -> bool:
        """Whether a message has begun and not ended (what the end of a capture cuts off)."""
        return self._buffer.startswith(HEADER)

    def _skip(self) -> None:
        if not self._skipping:
            self.stats.drop(DropReason.PARTIAL)
            self._skipping = True

    def _message(self, raw: bytes) -> IvyMessage | None:
        self._skipping = False
        lines = parse_text(raw[_TEXT_AT:-1])
        if isinstance(lines, DropReason):
            self.stats.drop(lines)
            return None
        self.stats.frames += 1
        return IvyMessage(raw[len(HEADER) : _TEXT_AT], lines)


def _first(line: IvyLine | None, index: int = 0) -> float | None:
    if line is None or len(line.values) <= index:
        return None
    return line.values[index]


def _pulse_rate(line: IvyLine) -> tuple[bool, float | None]:
    """(present, value) of the ``PR=…`` field of a SpO2 line."""
    for item in line.rest:
        m = _PR_FIELD.fullmatch(item.strip())
        if m is not None:
            value = _value(m.group(1))
            return True, None if isinstance(value, DropReason) else value
    return False, None


def message_samples(
    message: IvyMessage, *, t: float, device_id: str, cuff: DeterminationMemory
) -> tuple[Sample, ...]:
    """The samples of a message, stamped `t` (epoch seconds UTC)."""
    lines = message.lines
    found: list[tuple[Param, float | None]] = []
    for name, param in (("HR", Param.HR), ("RR", Param.RR), ("ETCO2", Param.ETCO2)):
        if name in lines:
            found.append((param, _first(lines[name])))
    spo2 = lines.get("SPO2")
    if spo2 is not None:
        found.append((Param.SPO2, _first(spo2)))
        has_pr, pr = _pulse_rate(spo2)
        if has_pr:
            found.append((Param.PR, pr))
    for name in ("P1", "P2"):
        line = lines.get(name)
        if line is not None and line.label.upper() in ART_LABELS and len(line.values) >= 3:
            found += [
                (Param.ABP_SYS, line.values[0]),
                (Param.ABP_DIA, line.values[1]),
                (Param.ABP_MEAN, line.values[2]),
            ]
            break  # one arterial line
    nibp = lines.get("NIBP")
    if nibp is not None and len(nibp.values) >= 3:
        sys, dia, mean = nibp.values[:3]
        if (
            sys is not None
            and dia is not None
            and mean is not None
            and cuff.is_new((sys, dia, mean))
        ):
            found += [(Param.NIBP_SYS, sys), (Param.NIBP_DIA, dia), (Param.NIBP_MEAN, mean)]
    out = []
    for param, value in found:
        number = math.nan if value is None else value
        sample, _ = judged(t, param, number, device_id, valid=True, reason=None)
        out.append(sample)
    return tuple(out)


def _field(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{round(value)}"


def encode_message(
    *,
    hr: float | None = None,
    spo2: float | None = None,
    pr: float | None = None,
    nibp: Sequence[float] | None = None,
    art: Sequence[float] | None = None,
    rr: float | None = None,
    etco2: float | None = None,
    waveform: bytes = bytes(WAVEFORM_BYTES),
) -> bytes:
    """An ANSAR-B message as the monitor sends it (for the simulator and tests).

    Every line the monitor has a module for is sent, with empty values where it has none:
    HR and SPO2 always, NIBP as (sys, dia, mean) (the pulse field left empty) when given,
    P1 labelled ART when `art` is given, RR and ETCO2 when given.
    """
    if len(waveform) != WAVEFORM_BYTES:
        raise ValueError(f"the waveform block is {WAVEFORM_BYTES} bytes, not {len(waveform)}")
    lines = [f"HR=1;{_field(hr)};ECG-II-DIAG;", f"SPO2=1;{_field(spo2)};PR={_field(pr)} ;"]
    if nibp is not None:
        sys, dia, mean = nibp
        lines.append(f"NIBP=4;{_field(sys)};{_field(dia)};{_field(mean)};;NIBP;;")
    if art is not None:
        sys, dia, mean = art
        lines.append(f"P1=3;{_field(sys)};{_field(dia)};{_field(mean)};ART;;")
    if rr is not None:
        lines.append(f"RR=1;{_field(rr)};RESP;;")
    if etco2 is not None:
        lines.append(f"ETCO2=1;{_field(etco2)};CO2;;")
    text = "".join(line + "\r" for line in lines).encode("ascii")
    return HEADER + waveform + text + bytes((END,))


@dataclass
class IvyLink(UnaskedLink):
    """The `drivers.link.LinkProtocol` of ANSAR-B: the monitor talks, the host listens.

    Samples are stamped with the receive time (`now`): ANSAR-B sends no clock.
    """

    device_id: str
    stats: DriverStats
    cuff: DeterminationMemory = field(default_factory=DeterminationMemory)

    def __post_init__(self) -> None:
        self._decoder = MessageDecoder(self.stats)

    def receive(self, data: bytes, now: float) -> Received:
        """The samples of the messages `data` completed, stamped `now`."""
        samples: list[Sample] = []
        for message in self._decoder.feed(data):
            samples += message_samples(message, t=now, device_id=self.device_id, cuff=self.cuff)
        return Received(tuple(samples))


def decode_capture(data: bytes, *, device_id: str) -> tuple[list[Sample], DriverStats]:
    """The samples of a raw capture (the bytes a monitor sent), and what was dropped.

    ANSAR-B carries no clock and the monitor sends one message a second, so the samples of
    the n-th message of the capture are stamped n seconds (epoch seconds from 0: the capture's
    own time line, not the wall clock).
    """
    stats = DriverStats()
    cuff = DeterminationMemory()
    samples: list[Sample] = []
    decoder = MessageDecoder(stats)
    for n, message in enumerate(decoder.feed(data)):
        samples += message_samples(message, t=float(n), device_id=device_id, cuff=cuff)
    if decoder.pending:
        stats.drop(DropReason.PARTIAL)  # a last message the capture cut off
    stats.samples = len(samples)
    return samples, stats
