"""Sans-I/O codec for the GE Datex-Ohmeda S/5 computer interface (DRI records over RS-232).

Sources: GE "S/5 Computer Interface Specification" M1017617 12th ed. ([CI]) and "S/5 DRI
Specification" 8005313 12th ed. ([DRI]), summarised byte by byte in docs/ge_s5.md (cited
below as docs/ge_s5.md §N) and docs/devices.md §2.3. All integers are little-endian.

Framing (docs/ge_s5.md §1.2, [CI] p.3-4)::

    7E | escaped( record [r_len bytes] + checksum [1 byte] ) | 7E

Every frame has its own start and end flag (frames arrive back to back as ``... 7E 7E ...``).
0x7E and 0x7D inside are sent as ``7D 5E`` and ``7D 5D``. The checksum is the 8-bit sum of the
unescaped record bytes and is escaped like any other byte. `FrameDecoder` treats every flag as a
boundary, so it resynchronises at the first flag after any damage (docs/ge_s5.md §1.3).

A record is a 40-byte header (``r_len``, ``r_nbr``, ``dri_level``, ``plug_id``, ``r_time``,
reserved, ``r_maintype``, 8 subrecord descriptors) and a data area (docs/ge_s5.md §2). This codec
speaks the physiological database (PHDB, ``r_maintype`` 0): the host's request subrecord
(docs/ge_s5.md §5) and the monitor's 278-byte displayed-values subrecord of the BASIC class
(docs/ge_s5.md §3.3 §4.1), from which it decodes ECG heart rate, invasive pressures labelled ART (or
ABP), NIBP, SpO2 and its pulse rate. Values at or below -32001 are the monitor's special values
(docs/ge_s5.md §4.2) and become invalid samples whose reason names them.

NIBP is sent in every record and stays displayed for minutes, so `NibpTracker` decides which
record carries a *new* cuff determination (docs/ge_s5.md §7.3). Sample times come from the monitor's
``r_time``, anchored to the daemon clock once per connection, so records 5 s apart give samples
exactly 5 s apart (`GeS5Link`).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from drivers import transparency
from drivers.base import DriverStats
from drivers.link import Received
from drivers.samples import judged
from kernel.vocabulary import Param, Sample

__all__ = [
    "ABSENT_NIBP",
    "ABSENT_PRESSURES",
    "ABSENT_SPO2",
    "ART_LABELS",
    "CLASS_DENY_BASIC",
    "DATA_INVALID",
    "DRI_LEVEL_05",
    "ECG_HR_SOURCES",
    "ESC",
    "FLAG",
    "HEADER_SIZE",
    "HR_NOT_ECG",
    "INACTIVE",
    "MAX_ESCAPED",
    "MAX_PAYLOAD",
    "NIBP_AUTO",
    "NIBP_CALIBRATING",
    "NIBP_MEASURING",
    "NIBP_OLD",
    "PHDB_SIZE",
    "RETIME_S",
    "SPECIAL_REASONS",
    "SR_DISPL",
    "STATUS_ACTIVE",
    "STATUS_EXISTS",
    "BasicValues",
    "DriRecord",
    "DropReason",
    "FrameDecoder",
    "GeS5Link",
    "Group",
    "NibpTracker",
    "PhdbRequest",
    "Subrecord",
    "absent",
    "basic_samples",
    "decode_capture",
    "displayed_basic",
    "encode_displayed_record",
    "encode_frame",
    "encode_request",
    "parse_request",
    "request_displayed",
    "request_stop",
]

# Framing (docs/ge_s5.md §1.2, §8).
FLAG: Final = 0x7E
ESC: Final = 0x7D
_FRAMING: Final = frozenset({FLAG, ESC})  # the bytes sent escaped ([CI] p.3)
HEADER_SIZE: Final = 40
# [DRI] §2.2: the data area is at most 1450 bytes, so a record is at most 1490 and the unescaped
# payload (record + checksum) at most 1491; escaped, at most twice that between the flags.
MAX_RECORD: Final = HEADER_SIZE + 1450
MAX_PAYLOAD: Final = MAX_RECORD + 1
MAX_ESCAPED: Final = 2 * MAX_PAYLOAD

# Main types and PHDB subrecord types (docs/ge_s5.md §2, §3.1).
MT_PHDB: Final = 0
SR_REQUEST: Final = 0
SR_DISPL: Final = 1
SR_EOL: Final = 0xFF
_N_DESC: Final = 8
# Smallest body of a PHDB subrecord type: request 9, dri_phdb 278, aux info 114 (docs/ge_s5.md §3).
_SR_SIZE: Final[Mapping[int, int]] = MappingProxyType({0: 9, 1: 278, 2: 278, 3: 278, 4: 114})
PHDB_SIZE: Final = 278
_CLASS_SIZE: Final = 270
CLASS_BASIC: Final = 0
# Request class bit field ([DRI] Table 3-3): 0 asks for BASIC; 0x1 denies it.
CLASS_DENY_BASIC: Final = 0x1
DRI_LEVEL_05: Final = 11  # DRI_LEVEL_05, the '15 level of CARESCAPE monitors ([DRI] Table 2-5)

# Special values ([DRI] Table 3-9; -32765 only in VSCapture): anything <= -32001 is not a reading.
DATA_INVALID: Final = -32767
_SPECIAL_LIMIT: Final = -32001
SPECIAL_REASONS: Final[Mapping[int, str]] = MappingProxyType(
    {
        -32767: "ge_invalid",
        -32766: "ge_not_updated",
        -32765: "ge_discontinuity",
        -32764: "ge_under_range",
        -32763: "ge_over_range",
        -32762: "ge_not_calibrated",
    }
)
_OTHER_SPECIAL: Final = "ge_special"
INACTIVE: Final = "ge_inactive"  # the module exists but its measurement is off
HR_NOT_ECG: Final = "ge_hr_not_ecg"  # the monitor takes HR from a pressure or pleth channel

# Group header status bits common to all groups ([DRI] Table 3-8, docs/ge_s5.md §4.3).
STATUS_EXISTS: Final = 0x1
STATUS_ACTIVE: Final = 0x2
# ECG status bits 3-6: the HR source; 1 ECG, 9 ECG (Mortara) ([DRI] Table 3-10, docs/ge_s5.md §4.4).
_HR_SOURCE_SHIFT: Final = 3
_HR_SOURCE_MASK: Final = 0xF
ECG_HR_SOURCES: Final = frozenset({1, 9})
# IBP label codes that name an arterial line: 1 ART, 8 ABP ([DRI] Table 3-16).
ART_LABELS: Final = frozenset({1, 8})
# NIBP status lives in the label word ([DRI] Table 3-18, docs/ge_s5.md §4.4).
NIBP_AUTO: Final = 1 << 3
NIBP_MEASURING: Final = 1 << 5
NIBP_CALIBRATING: Final = 1 << 7
NIBP_OLD: Final = 1 << 8  # the last measurement ended more than 60 s ago

# BASIC class layout: group name, offset in the 270-byte class, number of i16 values after its
# 6-byte header (docs/ge_s5.md §4.1). Groups this codec does not read are written as absent.
_BASIC_GROUPS: Final[tuple[tuple[str, int, int], ...]] = (
    ("ecg", 0, 5),  # hr, st1, st2, st3, imp_rr
    ("p1", 16, 4),  # sys, dia, mean, hr
    ("p2", 30, 4),
    ("p3", 44, 4),
    ("p4", 58, 4),
    ("nibp", 72, 4),  # sys, dia, mean, hr
    ("t1", 86, 1),
    ("t2", 94, 1),
    ("t3", 102, 1),
    ("t4", 110, 1),
    ("spo2", 118, 4),  # spo2, pr, ir_amp, svo2
    ("co2", 132, 4),
    ("o2", 146, 2),
    ("n2o", 156, 2),
    ("aa", 166, 3),
    ("flow_vol", 178, 8),
    ("co_wedge", 200, 4),
    ("nmt", 214, 3),
    ("svo2", 232, 1),
    ("p5", 240, 4),
    ("p6", 254, 4),
)
_ECG_EXTRA: Final = 226  # hr_ecg, hr_max, hr_min: three i16 without a group header
_PRESSURES: Final = ("p1", "p2", "p3", "p4", "p5", "p6")
_GROUP_HEADER: Final = struct.Struct("<IH")
_RECORD_HEADER: Final = struct.Struct("<hBBHIBBHh")  # 16 bytes, then sr_desc[8]
_DESC: Final = struct.Struct("<hB")
_REQUEST: Final = struct.Struct("<BhIh")  # dri_phdb_req, packed to 9 bytes
_PHDB_TRAILER: Final = struct.Struct("<BBH")  # marker, reserved, cl_drilvl_subt

# Timestamps (see GeS5Link): the daemon-clock offset is kept on a 1/1024 s grid, so r_time +
# offset is exact in binary floating point and records 5 s apart give t exactly 5 s apart.
_OFFSET_GRID: Final = 1024
RETIME_S: Final = 10.0  # a record further than this from `now` means the monitor clock changed


class DropReason(StrEnum):
    """Why a frame or record was dropped (the `reason` label of the drop counter)."""

    BAD_ESCAPE = "bad_escape"  # 0x7D followed by anything but 0x5E or 0x5D
    TOO_SHORT = "too_short"  # fewer bytes than a header and a checksum
    TOO_LONG = "too_long"  # longer than the largest record, or no flag for that long
    BAD_CHECKSUM = "bad_checksum"
    BAD_LENGTH = "bad_length"  # r_len does not match the bytes between the flags
    UNSUPPORTED = "unsupported"  # a valid record of another main type (waveform, alarm, ...)
    BAD_SUBRECORD = "bad_subrecord"  # a descriptor pointing outside the record or too short
    RETIMED = "retimed"  # not a drop: the monitor's clock jumped and the offset was re-anchored
    TIME_BACKWARDS = "time_backwards"  # a record older than the previous one


@dataclass(frozen=True, slots=True)
class Subrecord:
    """One subrecord: its type and its bytes (up to the next subrecord or the record end)."""

    sr_type: int
    data: bytes


@dataclass(frozen=True, slots=True)
class DriRecord:
    """A PHDB record with a valid checksum and consistent descriptors (docs/ge_s5.md §2)."""

    r_nbr: int
    dri_level: int
    plug_id: int
    r_time: int  # the monitor's transmit time, Unix seconds
    subrecords: tuple[Subrecord, ...]


@dataclass(frozen=True, slots=True)
class PhdbRequest:
    """A host's transmission request (docs/ge_s5.md §5): record type, interval, class bit field."""

    rcrd_type: int  # 1 displayed, 2 10-s trend, 3 60-s trend
    tx_ival: int  # s; -1 once, 0 stop
    class_bf: int


@dataclass(frozen=True, slots=True)
class Group:
    """One BASIC group as sent: header status and label, then its raw i16 values in order.

    Values are in the units of the spec (1/100 mmHg, 1/100 %, 1/min), special values included.
    """

    status: int
    label: int
    values: tuple[int, ...]

    @property
    def present(self) -> bool:
        """The module is plugged in (status bit 0, "exists")."""
        return bool(self.status & STATUS_EXISTS)

    @property
    def active(self) -> bool:
        """The module exists and measures (status bits 0 and 1)."""
        return self.status & (STATUS_EXISTS | STATUS_ACTIVE) == STATUS_EXISTS | STATUS_ACTIVE


def absent(n_values: int, label: int = 0) -> Group:
    """A group whose module does not exist: status 0, every value DATA_INVALID."""
    return Group(status=0, label=label, values=(DATA_INVALID,) * n_values)


ABSENT_PRESSURES: Final = tuple(absent(4) for _ in _PRESSURES)
ABSENT_NIBP: Final = absent(4)
ABSENT_SPO2: Final = absent(4)
_ABSENT_ECG: Final = absent(5)


@dataclass(frozen=True, slots=True)
class BasicValues:
    """The groups of a BASIC displayed-values subrecord that Vigil reads.

    `pressures` are p1..p6 in order; `time` is the subrecord's own timestamp (Unix seconds).
    """

    time: int = 0
    ecg: Group = _ABSENT_ECG
    pressures: tuple[Group, ...] = ABSENT_PRESSURES
    nibp: Group = ABSENT_NIBP
    spo2: Group = ABSENT_SPO2

    def groups(self) -> dict[str, Group]:
        """The groups by their spec name (ecg, p1..p6, nibp, spo2)."""
        out = {"ecg": self.ecg, "nibp": self.nibp, "spo2": self.spo2}
        out.update(zip(_PRESSURES, self.pressures, strict=True))
        return out


# ---------------------------------------------------------------------------- framing


def _escape(payload: bytes) -> bytes:
    return transparency.escape(payload, _FRAMING)


def _unescape(raw: bytes) -> bytes | None:
    """The bytes between two flags with the escapes undone; None for an illegal escape."""
    return transparency.unescape(raw, _FRAMING)


def encode_frame(record: bytes) -> bytes:
    """`record` with its checksum, escaped, between flags ([CI] p.3-4, docs/ge_s5.md §1.2).

    The checksum is the sum of the unescaped record bytes modulo 256 and is escaped too.
    """
    payload = record + bytes([sum(record) & 0xFF])
    return bytes([FLAG]) + _escape(payload) + bytes([FLAG])


def _check_payload(payload: bytes) -> bytes | DropReason:
    """The record in a de-framed payload (record + checksum), or why it is not one."""
    if len(payload) < HEADER_SIZE + 1:
        return DropReason.TOO_SHORT
    if len(payload) > MAX_PAYLOAD:
        return DropReason.TOO_LONG
    record = payload[:-1]
    # checksum before length: a damaged byte anywhere, r_len included, is a checksum error
    if sum(record) & 0xFF != payload[-1]:
        return DropReason.BAD_CHECKSUM
    (r_len,) = struct.unpack_from("<h", record)
    if r_len != len(record):
        return DropReason.BAD_LENGTH
    return record


def _subrecords(record: bytes) -> tuple[Subrecord, ...] | DropReason:
    """The subrecords the descriptors point at, each up to the next one or the record end."""
    data = record[HEADER_SIZE:]
    descs: list[tuple[int, int]] = []
    for k in range(_N_DESC):
        offset, sr_type = _DESC.unpack_from(record, _RECORD_HEADER.size + _DESC.size * k)
        if sr_type == SR_EOL:
            break
        # sr_offset counts from the start of the data area ([DRI] Table 2-4)
        if not 0 <= offset <= len(data):
            return DropReason.BAD_SUBRECORD
        descs.append((offset, sr_type))
    ends = sorted({offset for offset, _ in descs} | {len(data)})
    out = []
    for offset, sr_type in descs:
        end = min((e for e in ends if e > offset), default=offset)
        body = data[offset:end]
        if len(body) < _SR_SIZE.get(sr_type, 0):
            return DropReason.BAD_SUBRECORD
        out.append(Subrecord(sr_type, body))
    return tuple(out)


def _parse_record(payload: bytes) -> DriRecord | DropReason:
    """A de-framed payload as a PHDB record, or why it is dropped."""
    record = _check_payload(payload)
    if isinstance(record, DropReason):
        return record
    _, r_nbr, dri_level, plug_id, r_time, _, _, _, maintype = _RECORD_HEADER.unpack_from(record)
    if maintype != MT_PHDB:
        return DropReason.UNSUPPORTED
    subrecords = _subrecords(record)
    if isinstance(subrecords, DropReason):
        return subrecords
    return DriRecord(r_nbr, dri_level, plug_id, r_time, subrecords)


@dataclass
class FrameDecoder:
    """Splits a byte stream at every 0x7E flag and decodes the PHDB records between them.

    `feed` takes any chunk and returns the records of the frames it completed; it never raises.
    Every valid PHDB record counts in ``stats.frames``; every other non-empty stretch between
    flags counts once in ``stats.dropped`` by `DropReason` (docs/ge_s5.md §1.3). Bytes before the
    first flag are such a stretch: a connection opened mid-frame drops that frame's tail.
    """

    stats: DriverStats = field(default_factory=DriverStats)
    _buffer: bytearray = field(default_factory=bytearray)
    _discarding: bool = False

    def feed(self, data: bytes) -> list[DriRecord]:
        """Add received bytes; return the records of the frames they completed."""
        out: list[DriRecord] = []
        start = 0
        while True:
            flag = data.find(FLAG, start)
            stop = flag if flag >= 0 else len(data)
            if not self._discarding:
                self._buffer += data[start:stop]
                if len(self._buffer) > MAX_ESCAPED:
                    # no flag for longer than the largest frame: drop it all up to the next flag
                    self.stats.drop(DropReason.TOO_LONG)
                    self._buffer.clear()
                    self._discarding = True
            if flag < 0:
                return out
            if self._discarding:
                self._discarding = False
            elif self._buffer:  # two flags in a row (end, start) leave nothing between them
                record = self._frame(bytes(self._buffer))
                if record is not None:
                    out.append(record)
            self._buffer.clear()
            start = flag + 1

    def _frame(self, raw: bytes) -> DriRecord | None:
        payload = _unescape(raw)
        result = DropReason.BAD_ESCAPE if payload is None else _parse_record(payload)
        if isinstance(result, DropReason):
            self.stats.drop(result)
            return None
        self.stats.frames += 1
        return result


# ---------------------------------------------------------------------------- requests


def _header(r_len: int, *, r_nbr: int, dri_level: int, r_time: int, maintype: int) -> bytes:
    return _RECORD_HEADER.pack(r_len, r_nbr, dri_level, 0, r_time, 0, 0, 0, maintype)


def _descriptors(subrecords: list[tuple[int, int]]) -> bytes:
    """sr_desc[8]: the (offset, type) pairs, the end-of-list mark, zeros after it."""
    descs = [*subrecords, (0, SR_EOL)]
    descs += [(0, 0)] * (_N_DESC - len(descs))
    return b"".join(_DESC.pack(offset, sr_type) for offset, sr_type in descs)


def encode_request(rcrd_type: int, tx_ival: int, class_bf: int, *, dri_level: int = 0) -> bytes:
    """The 49-byte PHDB request record ([CI] §3 and Appendix A, docs/ge_s5.md §5.1), unframed.

    `tx_ival`: seconds between automatic transmissions (at least 5 for displayed values), -1
    for one transmission, 0 to stop. `class_bf`: 0 BASIC, | 0x2 EXT1, | 0x4 EXT2, | 0x8 EXT3.
    The official vectors send ``dri_level`` 0, as this does by default (docs/ge_s5.md §6.4).
    """
    body = _REQUEST.pack(rcrd_type, tx_ival, class_bf, 0)
    head = _header(HEADER_SIZE + len(body), r_nbr=0, dri_level=dri_level, r_time=0, maintype=0)
    return head + _descriptors([(0, SR_REQUEST)]) + body


def request_displayed(interval_s: int, class_bf: int = 0) -> bytes:
    """The framed request for displayed values every `interval_s` (>= 5) seconds, BASIC class."""
    if interval_s < 5:
        raise ValueError("displayed values come at most every 5 s ([CI] p.7)")
    return encode_frame(encode_request(SR_DISPL, interval_s, class_bf))


def request_stop() -> bytes:
    """The framed request that stops displayed values (tx_ival 0, classes 0; [CI] App. A)."""
    return encode_frame(encode_request(SR_DISPL, 0, 0))


def parse_request(record: DriRecord) -> PhdbRequest | None:
    """The request in `record` (its first request subrecord), or None if it has none."""
    for sub in record.subrecords:
        if sub.sr_type == SR_REQUEST:
            rcrd_type, tx_ival, class_bf, _ = _REQUEST.unpack_from(sub.data)
            return PhdbRequest(rcrd_type, tx_ival, class_bf)
    return None


# ---------------------------------------------------------------------------- displayed values


def _read_group(body: bytes, offset: int, n_values: int) -> Group:
    status, label = _GROUP_HEADER.unpack_from(body, offset)
    values = struct.unpack_from(f"<{n_values}h", body, offset + _GROUP_HEADER.size)
    return Group(status, label, values)


def displayed_basic(record: DriRecord) -> BasicValues | None:
    """The BASIC class of the first displayed-values subrecord in `record`, if there is one.

    The class is read from ``cl_drilvl_subt`` bits 8-11, never from the subrecord's position
    (docs/ge_s5.md §3.2).
    """
    for sub in record.subrecords:
        if sub.sr_type != SR_DISPL:
            continue
        _, _, cl_drilvl_subt = _PHDB_TRAILER.unpack_from(sub.data, 4 + _CLASS_SIZE)
        if (cl_drilvl_subt >> 8) & 0xF != CLASS_BASIC:
            continue
        (time,) = struct.unpack_from("<I", sub.data)
        body = sub.data[4 : 4 + _CLASS_SIZE]
        layout = {name: (offset, n) for name, offset, n in _BASIC_GROUPS}
        groups = {name: _read_group(body, *layout[name]) for name in ("ecg", "nibp", "spo2")}
        return BasicValues(
            time=time,
            ecg=groups["ecg"],
            pressures=tuple(_read_group(body, *layout[name]) for name in _PRESSURES),
            nibp=groups["nibp"],
            spo2=groups["spo2"],
        )
    return None


def _basic_body(basic: BasicValues) -> bytes:
    given = basic.groups()
    body = bytearray(_CLASS_SIZE)
    for name, offset, n_values in _BASIC_GROUPS:
        group = given.get(name) or absent(n_values)
        if len(group.values) != n_values:
            raise ValueError(f"group {name} has {n_values} values, not {len(group.values)}")
        _GROUP_HEADER.pack_into(body, offset, group.status, group.label)
        struct.pack_into(f"<{n_values}h", body, offset + _GROUP_HEADER.size, *group.values)
    struct.pack_into("<3h", body, _ECG_EXTRA, DATA_INVALID, DATA_INVALID, DATA_INVALID)
    return bytes(body)


def encode_displayed_record(
    basic: BasicValues, *, r_time: int, r_nbr: int = 0, dri_level: int = DRI_LEVEL_05
) -> bytes:
    """A PHDB record with one BASIC displayed-values subrecord, unframed (docs/ge_s5.md §6.8).

    40-byte header (r_len 318, descriptor (0, 1), end of list) and the 278-byte subrecord:
    time (``basic.time``, or `r_time` when 0), the 270-byte class, marker 0, reserved 0 and
    ``cl_drilvl_subt`` = class << 8 | level << 4 | subtype, as a real monitor sends it.
    Groups Vigil does not read are absent (status 0, values DATA_INVALID).
    """
    time = basic.time or r_time
    trailer = _PHDB_TRAILER.pack(0, 0, (CLASS_BASIC << 8) | (dri_level << 4) | SR_DISPL)
    sub = struct.pack("<I", time) + _basic_body(basic) + trailer
    head = _header(
        HEADER_SIZE + len(sub), r_nbr=r_nbr & 0xFF, dri_level=dri_level, r_time=r_time, maintype=0
    )
    return head + _descriptors([(0, SR_DISPL)]) + sub


# ---------------------------------------------------------------------------- samples


def _reading(raw: int, scale: int) -> tuple[float, str | None]:
    """A raw i16 in 1/`scale` units: the value, or NaN and the special value's name."""
    if raw <= _SPECIAL_LIMIT:
        return math.nan, SPECIAL_REASONS.get(raw, _OTHER_SPECIAL)
    return raw / scale, None


def _samples(
    t: float, group: Group, fields: tuple[tuple[Param, int, int], ...], device_id: str
) -> list[Sample]:
    """Samples of (param, value index, scale) in `group`; none if the module does not exist."""
    if not group.present:
        return []
    out = []
    for param, index, scale in fields:
        value, reason = _reading(group.values[index], scale)
        if not group.active:
            reason = INACTIVE
        sample, _ = judged(t, param, value, device_id, valid=reason is None, reason=reason)
        out.append(sample)
    return out


def basic_samples(
    basic: BasicValues, *, t: float, device_id: str, nibp: bool = False
) -> tuple[Sample, ...]:
    """The samples of a BASIC subrecord, all stamped `t`, in the scenario order.

    HR (``ecg.hr``, 1/min), PR and SPO2 (``SpO2.pr`` 1/min, ``SpO2.SpO2`` 1/100 %), ABP
    sys/dia/mean from the first pressure channel labelled ART or ABP (1/100 mmHg), and, only if
    `nibp` (the record carries a new determination, `NibpTracker`), NIBP sys/dia/mean.

    A group whose module does not exist gives no samples; one that exists but does not measure
    gives invalid samples (``ge_inactive``). A special value gives an invalid sample named after
    it (`SPECIAL_REASONS`). ``ecg.hr`` is the monitor's *selected* HR source ([DRI] Table
    3-10); when that is not ECG it is a pulse rate, so HR is invalid (``ge_hr_not_ecg``).
    """
    out = _samples(t, basic.ecg, ((Param.HR, 0, 1),), device_id)
    source = (basic.ecg.status >> _HR_SOURCE_SHIFT) & _HR_SOURCE_MASK
    if out and out[0].valid and source not in ECG_HR_SOURCES:
        hr = out[0]
        out[0], _ = judged(t, Param.HR, hr.value, device_id, valid=False, reason=HR_NOT_ECG)
    out += _samples(t, basic.spo2, ((Param.PR, 1, 1), (Param.SPO2, 0, 100)), device_id)
    for group in basic.pressures:
        if group.present and group.label in ART_LABELS:
            abp = ((Param.ABP_SYS, 0, 100), (Param.ABP_DIA, 1, 100), (Param.ABP_MEAN, 2, 100))
            out += _samples(t, group, abp, device_id)
            break  # one arterial line; a second channel labelled ART is a duplicate
    if nibp:
        cuff = ((Param.NIBP_SYS, 0, 100), (Param.NIBP_DIA, 1, 100), (Param.NIBP_MEAN, 2, 100))
        out += _samples(t, basic.nibp, cuff, device_id)
    return tuple(out)


@dataclass
class NibpTracker:
    """Finds the record that carries a new cuff determination (docs/ge_s5.md §7.3; UNCERTAIN there).

    The monitor sends the last determination in every record for as long as it is displayed,
    so a value is new only at a transition. A record carries a new determination when the NIBP
    module exists and is active, its label has none of "measuring", "calibrating" and "data
    older than 60 s", sys, dia and mean are all readings (not special values), and

    (a) the previous record had "measuring" (the measurement just finished), or
    (b) the previous record had "older than 60 s" (fresh data replaced old data), or
    (c) (sys, dia, mean) differs from the last determination reported (or none was).

    A transition (a) or (b) seen while the values are not yet readable waits for the first
    record where they are; "older than 60 s" cancels it. Data older than 60 s is never new: at
    start-up a determination already a minute old is not reported. Kept by the driver across
    reconnections, so a determination seen before a reconnection is not reported twice.
    """

    label: int | None = None
    last: tuple[int, int, int] | None = None
    armed: bool = False

    def update(self, group: Group) -> bool:
        """Whether this record's NIBP group is a new determination (then it is remembered)."""
        if not group.active:
            return False
        label = group.label
        previous = self.label
        self.label = label
        if previous is not None and (
            (previous & NIBP_MEASURING and not label & NIBP_MEASURING)
            or (previous & NIBP_OLD and not label & NIBP_OLD)
        ):
            self.armed = True
        if label & NIBP_OLD:
            self.armed = False
            return False
        if label & (NIBP_MEASURING | NIBP_CALIBRATING):
            return False
        sys, dia, mean = group.values[:3]
        if min(sys, dia, mean) <= _SPECIAL_LIMIT:
            return False
        values = (sys, dia, mean)
        if self.armed or values != self.last:
            self.armed = False
            self.last = values
            return True
        return False


# ---------------------------------------------------------------------------- the link


@dataclass
class GeS5Link:
    """The `drivers.link.LinkProtocol` of the S/5 computer interface.

    `start` asks for BASIC displayed values every `interval_s` seconds (5, the minimum;
    [CI] p.7). The monitor then sends a record every `interval_s` seconds without further
    requests; `timer` repeats the request when no record arrived for max(3 x interval, 15) s
    since the last request (docs/ge_s5.md §6.6; a repeat within 5 s is ignored by the monitor).

    Sample times: the first record of the connection anchors ``offset = now - r_time``; every
    record's samples are stamped ``r_time + offset``, so records 5 s apart give samples exactly
    5 s apart whatever the receive jitter (docs/ALARMS.md breaks a run on a gap over 5 s). When
    ``r_time + offset`` is more than `RETIME_S` from `now` (the monitor's clock was set), the
    offset is re-anchored and ``retimed`` counted; the samples are still delivered. A record
    whose time is earlier than the previous record's is dropped (``time_backwards``).
    """

    device_id: str
    stats: DriverStats
    interval_s: int = 5
    nibp: NibpTracker = field(default_factory=NibpTracker)

    def __post_init__(self) -> None:
        self._decoder = FrameDecoder(self.stats)
        self._offset: float | None = None
        self._last_t = -math.inf
        self._last_request = -math.inf
        self._last_record = -math.inf

    @property
    def silence_s(self) -> float:
        """How long without a record before the request is sent again."""
        return max(3.0 * self.interval_s, 15.0)

    def start(self, now: float) -> bytes:
        """The displayed-values request."""
        self._last_request = now
        return request_displayed(self.interval_s)

    def receive(self, data: bytes, now: float) -> Received:
        """The samples of the records `data` completed (see the class docstring for `t`)."""
        samples: list[Sample] = []
        for record in self._decoder.feed(data):
            self._last_record = now
            basic = displayed_basic(record)
            if basic is None:
                continue  # a trend or auxiliary record: not asked for, nothing to report
            t = self._stamp(record.r_time, now)
            if t is None:
                continue
            new = self.nibp.update(basic.nibp)
            samples += basic_samples(basic, t=t, device_id=self.device_id, nibp=new)
        return Received(tuple(samples))

    def timer(self, now: float) -> bytes:
        """The request again after `silence_s` without a record; otherwise nothing."""
        if now - max(self._last_request, self._last_record) < self.silence_s:
            return b""
        self._last_request = now
        return request_displayed(self.interval_s)

    def _stamp(self, r_time: int, now: float) -> float | None:
        """The samples' time for a record sent at `r_time`, or None to drop the record."""
        if self._offset is None or abs(r_time + self._offset - now) > RETIME_S:
            if self._offset is not None:
                self.stats.drop(DropReason.RETIMED)
            self._offset = round((now - r_time) * _OFFSET_GRID) / _OFFSET_GRID
        t = r_time + self._offset
        if t < self._last_t:
            self.stats.drop(DropReason.TIME_BACKWARDS)
            return None
        self._last_t = t
        return t


def decode_capture(data: bytes, *, device_id: str) -> tuple[list[Sample], DriverStats]:
    """The samples of a raw capture (the bytes a monitor sent), and what was dropped.

    Without a live clock, each record's samples take the record's own ``r_time`` (the
    monitor's clock, epoch seconds UTC). NIBP samples appear once per new determination, as
    they would live (`NibpTracker`).
    """
    stats = DriverStats()
    nibp = NibpTracker()
    samples: list[Sample] = []
    for record in FrameDecoder(stats).feed(data):
        basic = displayed_basic(record)
        if basic is None:
            continue
        new = nibp.update(basic.nibp)
        samples += basic_samples(basic, t=float(record.r_time), device_id=device_id, nibp=new)
    stats.samples = len(samples)
    return samples, stats
