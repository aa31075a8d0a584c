r"""Sans-I/O codec for the HL7 v2.3.1 ORU messages Mindray monitors send (docs/devices.md §3.1).

Mindray BeneView and ePM monitors (and their eGateway) push unsolicited ORU^R01 messages over
MLLP (`kernel.mllp`), one message per parameter group a second, in their own dialect::

    MSH|^~\&|||||||ORU^R01|204|P|2.3.1|
    OBX||NM|160^SpO2|2103|98||||||F
    OBX||NM|161^PR|2103|60||||||F

The sender and receiver fields of MSH are empty and so, often, is its time; OBX-3 is a vendor
code and name (not LOINC or MDC), OBX-4 the parameter group; a value of ``-100`` means the
monitor has none. Beside each group comes a parallel message with one ``CE`` observation per
parameter, code ``2037``, the parameter's code in OBX-4 and its state in OBX-5
(``OBX||CE|2037^|160|3^||||||F``): ``3`` in every capture we know of where the parameter has a
value, ``2`` where it has none.

Decoded (vendor codes): HR 101, RR 151, SpO2 160, PR 161, NIBP 170/171/172 (sys, dia, mean),
the arterial line 500/501/502 (sys, mean, dia), EtCO2 250 (read as mmHg). Other codes (ST, PVCs,
temperatures, PA and CVP, agents …) are not in Vigil's vocabulary and are skipped. A ``-100``
value is an invalid sample with reason ``no_value``; a parameter whose last state was not ``3``
gives invalid samples with reason ``state_<n>`` (the state comes in the message after the
values, so it applies from the next second on). NIBP is passed on once per determination
(`drivers.samples.DeterminationMemory`).

Acknowledgement: when MSH-15 (accept acknowledgement type) is ``AL`` the link answers every
message with an ACK (``AA``, or ``AR`` for a message type it does not take, ``AE`` for one it
cannot read); with ``ER`` only the errors; empty or ``NE`` (what Mindray monitors send), none.

Parsed by hand rather than with python-hl7: that library takes ~660 µs a message here (measured
on this dialect), far from the decoding speed asked of every codec (bench/decode.py), and the
dialect is flat (no repetitions, no escapes in the fields read).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from drivers.base import DriverStats
from drivers.link import Received, UnaskedLink
from drivers.samples import DeterminationMemory, judged
from kernel.mllp import MllpDecoder, frame
from kernel.vocabulary import NIBP_PARAMS, Param, Sample

__all__ = [
    "INVALID",
    "STATE_CODE",
    "STATE_VALID",
    "VENDOR_CODES",
    "DropReason",
    "Hl7Message",
    "MindrayLink",
    "MindrayStream",
    "Observation",
    "ack_for",
    "decode_capture",
    "encode_group",
    "parse_message",
]

# docs/devices.md §3.1: the vendor code of each parameter Vigil reads
VENDOR_CODES: Final[Mapping[int, Param]] = MappingProxyType(
    {
        101: Param.HR,
        151: Param.RR,
        160: Param.SPO2,
        161: Param.PR,
        170: Param.NIBP_SYS,
        171: Param.NIBP_DIA,
        172: Param.NIBP_MEAN,
        500: Param.ABP_SYS,
        501: Param.ABP_MEAN,
        502: Param.ABP_DIA,
        250: Param.ETCO2,
    }
)
INVALID: Final = -100.0  # the monitor has no value
STATE_CODE: Final = 2037  # the CE observation that gives a parameter's state
STATE_VALID: Final = 3
_CUFF: Final = {Param.NIBP_SYS: 0, Param.NIBP_DIA: 1, Param.NIBP_MEAN: 2}

_NOT_TEXT = re.compile(rb"[^\r\n\x20-\x7e]")


class DropReason(StrEnum):
    """Why a frame or message was dropped, or what was noted (the drop counter's label)."""

    GARBAGE = "garbage"  # bytes outside MLLP frames
    TRUNCATED = "truncated"  # a frame cut short: the next one began before its end
    TOO_LONG = "too_long"  # a frame without end within the MLLP limit
    NOT_ASCII = "not_ascii"  # HL7 2.3.1's default character set is ASCII
    MALFORMED = "malformed"  # no MSH first, a short MSH, an OBX without its fields
    UNSUPPORTED = "unsupported_message"  # a message type other than ORU^R01 (acknowledged)
    BAD_VALUE = "bad_value"  # a numeric observation whose value is not a number (noted)


@dataclass(frozen=True, slots=True)
class Observation:
    """One OBX: value type, vendor code (None when not a number), sub-id, value, time."""

    value_type: str
    code: int | None
    sub_id: str
    value: str
    time: str = ""


@dataclass(frozen=True, slots=True)
class Hl7Message:
    """What this codec reads of one message."""

    message_type: str  # MSH-9, e.g. "ORU^R01"
    control_id: str  # MSH-10
    version: str  # MSH-12
    accept_ack: str  # MSH-15 ("" when absent)
    sending: tuple[str, str]  # MSH-3, MSH-4
    time: str  # OBR-7, else MSH-7 ("" when neither)
    observations: tuple[Observation, ...]


def _field(fields: Sequence[str], i: int) -> str:
    return fields[i] if i < len(fields) else ""


def parse_message(body: bytes) -> Hl7Message | DropReason:
    """The message in one MLLP frame's body, or why it is not one."""
    if _NOT_TEXT.search(body) is not None:
        return DropReason.NOT_ASCII
    text = body.decode("ascii")
    if not text.startswith("MSH") or len(text) < 8:
        return DropReason.MALFORMED
    fs = text[3]  # MSH-1, the field separator; MSH-2 gives the component separator
    segments = [s.strip("\n") for s in text.split("\r")]
    msh = segments[0].split(fs)
    if len(msh) < 12:
        return DropReason.MALFORMED
    cs = msh[1][:1] or "^"
    time = _field(msh, 6)
    observations: list[Observation] = []
    for segment in segments[1:]:
        if segment.startswith("OBX"):
            f = segment.split(fs)
            if len(f) < 6:
                return DropReason.MALFORMED
            code_text = f[3].split(cs, 1)[0]
            code = int(code_text) if code_text.isdigit() else None
            observations.append(Observation(f[2], code, f[4], f[5], _field(f, 14)))
        elif segment.startswith("OBR"):
            time = _field(segment.split(fs), 7) or time
    return Hl7Message(
        message_type=msh[8],
        control_id=msh[9],
        version=msh[11],
        accept_ack=_field(msh, 14),
        sending=(msh[2], msh[3]),
        time=time,
        observations=tuple(observations),
    )


def ack_for(message: Hl7Message, code: str, *, now: float) -> bytes:
    """An MLLP-framed ACK of `message` with MSA-1 `code` (AA, AE or AR), as Vigil sends it."""
    stamp = dt.datetime.fromtimestamp(now, tz=dt.UTC).strftime("%Y%m%d%H%M%S+0000")
    app, facility = message.sending
    text = (
        f"MSH|^~\\&|VIGIL||{app}|{facility}|{stamp}||ACK^R01|ACK{message.control_id}|P|"
        f"{message.version or '2.3.1'}\rMSA|{code}|{message.control_id}\r"
    )
    return frame(text)


def _wants_ack(message: Hl7Message, code: str) -> bool:
    mode = message.accept_ack.upper()
    return mode == "AL" or (mode == "ER" and code != "AA")


def hl7_time(text: str) -> float | None:
    """Epoch seconds of an HL7 TS (``YYYYMMDDHHMMSS[.S][+ZZZZ]``); no zone: the host's."""
    m = re.fullmatch(r"(\d{14})(?:\.\d+)?([+-]\d{4})?", text)
    if m is None:
        return None
    try:
        stamp = dt.datetime.strptime(m.group(1), "%Y%m%d%H%M%S")  # noqa: DTZ007 - zone below
    except ValueError:
        return None
    if m.group(2) is None:
        return stamp.astimezone().timestamp()
    return dt.datetime.strptime(m.group(1) + m.group(2), "%Y%m%d%H%M%S%z").timestamp()


@dataclass
class MindrayStream:
    """The receiving half of a Mindray HL7 link: frames in, samples and ACKs out.

    Counts every valid message in ``stats.frames`` and every dropped piece by `DropReason`.
    Keeps the parameters' last states and the last cuff determination (`cuff`, which a driver
    keeps across connections).
    """

    device_id: str
    stats: DriverStats = field(default_factory=DriverStats)
    cuff: DeterminationMemory = field(default_factory=DeterminationMemory)
    states: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._mllp = MllpDecoder(resync=True)
        self._counted = (0, 0, 0)

    def feed(self, data: bytes, now: float) -> tuple[list[tuple[Hl7Message, list[Sample]]], bytes]:
        """The messages `data` completed with their samples (stamped `now`), and the ACKs."""
        out: list[tuple[Hl7Message, list[Sample]]] = []
        acks = b""
        for body in self._mllp.feed(data):
            message = parse_message(body)
            if isinstance(message, DropReason):
                self.stats.drop(message)
                continue
            self.stats.frames += 1
            code = "AA"
            if message.message_type.split("^")[:2] != ["ORU", "R01"]:
                self.stats.drop(DropReason.UNSUPPORTED)
                code = "AR"
                out.append((message, []))
            else:
                out.append((message, self._samples(message, now)))
            if _wants_ack(message, code):
                acks += ack_for(message, code, now=now)
        self._count_framing()
        return out, acks

    def _count_framing(self) -> None:
        m = self._mllp
        garbage, truncated, too_long = self._counted
        for reason, n in (
            (DropReason.GARBAGE, m.garbage - garbage),
            (DropReason.TRUNCATED, m.truncated - truncated),
            (DropReason.TOO_LONG, m.too_long - too_long),
        ):
            if n:
                self.stats.drop(reason, n)
        self._counted = (m.garbage, m.truncated, m.too_long)

    def _samples(self, message: Hl7Message, t: float) -> list[Sample]:
        found: list[tuple[Param, float, str | None]] = []
        for obs in message.observations:
            code = obs.code
            if obs.value_type == "CE" and code == STATE_CODE:
                given = obs.value.split("^", 1)[0]
                if obs.sub_id.isdigit() and given.isdigit():
                    self.states[int(obs.sub_id)] = int(given)
                continue
            if obs.value_type != "NM" or code is None or code not in VENDOR_CODES:
                continue
            try:
                value = float(obs.value)
            except ValueError:
                self.stats.drop(DropReason.BAD_VALUE)
                continue
            state = self.states.get(code, STATE_VALID)
            reason = None if state == STATE_VALID else f"state_{state}"
            found.append((VENDOR_CODES[code], math.nan if value == INVALID else value, reason))
        cuff = [v for p, v, _ in sorted(found, key=lambda x: _CUFF.get(x[0], 9)) if p in _CUFF]
        new_cuff = (
            len(cuff) == 3
            and not any(math.isnan(v) for v in cuff)
            and self.cuff.is_new((cuff[0], cuff[1], cuff[2]))
        )
        out = []
        for param, value, reason in found:
            if param in NIBP_PARAMS and not new_cuff:
                continue
            sample, _ = judged(t, param, value, self.device_id, valid=reason is None, reason=reason)
            out.append(sample)
        return out


@dataclass
class MindrayLink(UnaskedLink):
    """The `drivers.link.LinkProtocol` of Mindray HL7: the monitor pushes, Vigil ACKs if asked.

    Samples are stamped with the receive time (`now`): the monitor's messages often carry no
    time, and when they do it is its local wall time without a zone.
    """

    device_id: str
    stats: DriverStats
    cuff: DeterminationMemory = field(default_factory=DeterminationMemory)

    def __post_init__(self) -> None:
        self._stream = MindrayStream(self.device_id, self.stats, self.cuff)

    def receive(self, data: bytes, now: float) -> Received:
        """The samples of the messages `data` completed, and the ACKs asked for."""
        messages, acks = self._stream.feed(data, now)
        return Received(tuple(s for _, samples in messages for s in samples), acks)


def _value(value: float | None) -> str:
    return f"{INVALID:.2f}" if value is None or math.isnan(value) else f"{value:g}"


def encode_group(
    group: int,
    observations: Sequence[tuple[int, str, float | None]],
    *,
    accept_ack: str = "",
    control_id: str = "204",
) -> tuple[bytes, bytes]:
    """One parameter group as the monitor sends it: the values message and its state message.

    `observations` are (vendor code, name, value or None); both MLLP-framed (for the simulator
    and tests).
    """
    ack = f"||{accept_ack}" if accept_ack else ""
    values = f"MSH|^~\\&|||||||ORU^R01|{control_id}|P|2.3.1|{ack}\r" + "".join(
        f"OBX||NM|{code}^{name}|{group}|{_value(v)}||||||F\r" for code, name, v in observations
    )
    states = "MSH|^~\\&|||||||ORU^R01|205|P|2.3.1|\r" + "".join(
        f"OBX||CE|{STATE_CODE}^|{code}|{2 if v is None or math.isnan(v) else 3}^||||||F\r"
        for code, _, v in observations
    )
    return frame(values), frame(states)


def decode_capture(data: bytes, *, device_id: str) -> tuple[list[Sample], DriverStats]:
    """The samples of a raw capture of the TCP stream (what the monitor sent), and the drops.

    Each message's samples take the message's own time (OBR-7, else MSH-7, in the host's zone
    when it has none). A message without a time (the monitor's periodic groups have none) is
    placed one second after the previous round of groups, a round ending when a parameter
    code comes again, counted from the last message that had a time (or from 0).
    """
    stats = DriverStats()
    stream = MindrayStream(device_id, stats)
    samples: list[Sample] = []
    base, rounds = 0.0, 0
    seen: set[int] = set()
    for message, got in stream.feed(data, 0.0)[0]:
        codes = {o.code for o in message.observations if o.value_type == "NM" and o.code}
        own = hl7_time(message.time)
        if own is not None:
            base, rounds, seen = own, 0, set()
        elif codes & seen:
            rounds += 1
            seen = set()
        seen |= codes
        samples += [dataclasses.replace(s, t=base + rounds) for s in got]
    stats.samples = len(samples)
    return samples, stats
