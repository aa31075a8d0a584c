"""IntelliVue Data Export messages: the association and the numerics poll, built and parsed.

Pure functions and frozen dataclasses over the *user data* of one frame (`framing`). All
multi-byte fields are big-endian. Sources: Philips Data Export Interface Programming Guide
("Session headers", "Remote Operation headers", "Poll Data Request/Result", "Attribute Data
Types"), as transcribed in docs/intellivue.md §2-§7 with VSCaptureMP, PERSEUS, OpenICE and
Intellivue-api agreeing on every layout used here.

The first byte of the user data names the message (guide "Session Headers")::

    0D association request   0E association response   0C refuse
    09 release request       0A release response       19 abort
    E1 Data Export command (session id 0xE100)

A Data Export command is nested, each level with its own length (docs/intellivue.md §4)::

    SPpdu    session_id 0xE100, p_context_id
    ROapdus  ro_type (ROIV 1, RORS 2, ROER 3, ROLRS 5), length
    RO*apdu  [ROLRS: state, count] invoke_id, command_type, length
    command  (EventReport, ActionArgument, ActionResult...), its own length, its body

Parsing is strict about lengths (every nested length must account for its bytes exactly), so a
frame whose FCS passed by chance, or a layout mistake, shows as `MessageError` rather than as
numbers. Unknown attributes are skipped by their length (guide: "ignore unknown attributes").
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final, NamedTuple

__all__ = [
    "ABORT",
    "MDS",
    "NOMENCLATURE_HEADER",
    "NOM_ACT_POLL_MDIB_DATA",
    "NOM_ACT_POLL_MDIB_DATA_EXT",
    "NOM_ATTR_NET_ADDR_INFO",
    "NOM_ATTR_NU_CMPD_VAL_OBS",
    "NOM_ATTR_NU_VAL_OBS",
    "NOM_ATTR_TIME_ABS",
    "NOM_ATTR_TIME_PD_POLL",
    "NOM_ATTR_TIME_REL",
    "NOM_ATTR_TIME_STAMP_ABS",
    "NOM_MOC_VMO_METRIC_NU",
    "NOM_NOTI_CONN_INDIC",
    "NOM_NOTI_MDS_CREAT",
    "NUMERICS",
    "RELEASE_REQUEST",
    "RELEASE_RESPONSE",
    "Attribute",
    "ContextPoll",
    "EventReport",
    "EventReportResult",
    "FloatSpecial",
    "Linked",
    "Message",
    "MessageError",
    "NuObservation",
    "Observation",
    "OtherCommand",
    "PollRequest",
    "PollResult",
    "RemoteError",
    "RoType",
    "Session",
    "SessionMessage",
    "UserInfo",
    "association_request",
    "association_response",
    "bcd_time",
    "connect_indication",
    "decode_float",
    "encode_float",
    "event_report_result",
    "extended_poll_request",
    "from_bcd_time",
    "mds_create_event",
    "mds_times",
    "nu_values",
    "numerics",
    "parse_message",
    "periodic_end",
    "periodic_results",
    "poll_request",
    "poll_result",
    "poll_results",
    "remote_error",
    "time_stamp",
    "user_info",
]


class MessageError(ValueError):
    """User data that is not a well-formed message of this protocol."""


class Session(IntEnum):
    """The session (association control) message types (guide "Session Headers")."""

    CONNECT = 0x0D  # CN_SPDU_SI, association request (client)
    ACCEPT = 0x0E  # AC_SPDU_SI, association response (monitor)
    REFUSE = 0x0C  # RF_SPDU_SI, association refused (monitor)
    FINISH = 0x09  # FN_SPDU_SI, release request (either)
    DISCONNECT = 0x0A  # DN_SPDU_SI, release response (either)
    ABORT = 0x19  # AB_SPDU_SI, abort (either)


class RoType(IntEnum):
    """ROapdus.ro_type (guide "Remote Operation Header")."""

    ROIV = 1  # invoke
    RORS = 2  # result
    ROER = 3  # error
    ROLRS = 5  # linked result: one part of a result too big for one message


# command_type (guide "Remote Operation Invoke")
CMD_EVENT_REPORT: Final = 0
CMD_CONFIRMED_EVENT_REPORT: Final = 1
CMD_CONFIRMED_ACTION: Final = 7
# RorlsId.state (guide "Remote Operation Linked Result"): the counter starts at 1
RORLS_FIRST: Final = 1
RORLS_NOT_FIRST_NOT_LAST: Final = 2
RORLS_LAST: Final = 3
# ROER error_value
NO_SUCH_ACTION: Final = 9

# Object classes (partition NOM_PART_OBJ = 1), attribute ids, actions, events (guide
# "Nomenclature"; docs/intellivue.md §3-§7, VSCaptureMP Class2.cs and OpenICE agree).
NOM_PART_OBJ: Final = 1
NOM_MOC_VMS_MDS: Final = 0x0021
NOM_MOC_VMO_METRIC_NU: Final = 0x0006
NOM_ACT_POLL_MDIB_DATA: Final = 0x0C16
# The extended poll (guide "Extended Poll Data Request"; VSCaptureMP, OpenICE, LNhealth): the
# single poll's arguments plus an attribute list; with NOM_ATTR_TIME_PD_POLL (a RelativeTime) the
# monitor sends a result periodically for that long. Its result has a sequence number more.
NOM_ACT_POLL_MDIB_DATA_EXT: Final = 0xF13B
NOM_ATTR_TIME_PD_POLL: Final = 0xF13E
NOM_NOTI_MDS_CREAT: Final = 0x0D06
NOM_ATTR_NU_VAL_OBS: Final = 0x0950
NOM_ATTR_NU_CMPD_VAL_OBS: Final = 0x094B
NOM_ATTR_TIME_STAMP_ABS: Final = 0x0990  # a numeric's own time stamp (not 0x0987)
NOM_ATTR_TIME_ABS: Final = 0x0987  # the MDS's date and time
NOM_ATTR_TIME_REL: Final = 0x098F  # the MDS's relative time
NOM_ATTR_VMS_MDS_STAT: Final = 0x09A7
MDS_STATUS_OPERATING: Final = 6

# The MDS as a ManagedObjectId {m_obj_class, context_id, handle}: polls and the create event
# are addressed to it (guide: "managed_object must be {NOM_MOC_VMS_MDS, 0, 0}").
MDS: Final = (NOM_MOC_VMS_MDS, 0, 0)
# polled_obj_type of a numerics poll: {NOM_PART_OBJ, NOM_MOC_VMO_METRIC_NU}
NUMERICS: Final = (NOM_PART_OBJ, NOM_MOC_VMO_METRIC_NU)

_SESSION_ID: Final = 0xE100
# What begins a connect indication instead of the session header: the nomenclature version
# (a real monitor's: ``00 00 01 00``)
NOMENCLATURE_HEADER: Final = b"\x00\x00\x01\x00"
# The connect indication's event type, and its IpAddressInfo attribute (MAC, IP, subnet mask)
NOM_NOTI_CONN_INDIC: Final = 0x0D17
NOM_ATTR_NET_ADDR_INFO: Final = 0xF100
# presentation context negotiated by the standard association request
_P_CONTEXT_ID: Final = 2

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


def _u16(v: int) -> bytes:
    return _U16.pack(v & 0xFFFF)


def _u32(v: int) -> bytes:
    return _U32.pack(v & 0xFFFFFFFF)


# ------------------------------------------------------------------ FLOAT-Type, time


class FloatSpecial(IntEnum):
    """FLOAT-Type mantissas that are not numbers (guide "FLOAT-Type")."""

    NAN = 0x7FFFFF  # not a number
    NRES = 0x800000  # not at this resolution
    POS_INF = 0x7FFFFE  # +infinity
    NEG_INF = 0x800002  # -infinity


# What each special value says, as a sample's reason.
_SPECIAL_REASON: Final = {
    FloatSpecial.NAN: "not_a_number",
    FloatSpecial.NRES: "not_at_resolution",
    FloatSpecial.POS_INF: "positive_infinity",
    FloatSpecial.NEG_INF: "negative_infinity",
}


@functools.lru_cache(maxsize=4096)  # pure, and a monitor's values recur every second
def decode_float(raw: int) -> tuple[float, str | None]:
    """(value, None) of a FLOAT-Type u32, or (NaN, reason) for a special value.

    Byte 0 is a signed exponent, bytes 1-3 a signed 24-bit mantissa; value = mantissa *
    10**exponent. A negative exponent divides, so 973e-1 reads as 97.3 exactly as a float
    literal would. Specials are recognised by the mantissa whatever the exponent.
    """
    mantissa = raw & 0xFFFFFF
    if mantissa in _SPECIAL_REASON:
        return float("nan"), _SPECIAL_REASON[FloatSpecial(mantissa)]
    if mantissa & 0x800000:
        mantissa -= 1 << 24
    exponent = (raw >> 24) & 0xFF
    if exponent & 0x80:
        exponent -= 1 << 8
    if exponent >= 0:
        return float(mantissa * 10**exponent), None
    return mantissa / 10**-exponent, None


def encode_float(value: float) -> int:
    """`value` as FLOAT-Type with the fewest decimals (up to 6) that hold it; NaN as NaN.

    Raises:
        ValueError: `value` does not fit a 24-bit mantissa at any exponent tried.
    """
    if math.isnan(value):
        return int(FloatSpecial.NAN)
    for decimals in range(7):
        scale: int = 10**decimals
        mantissa = round(value * scale)
        if mantissa / scale == value or decimals == 6:
            if not -0x7FFFFD <= mantissa <= 0x7FFFFD:
                break
            return ((-decimals & 0xFF) << 24) | (mantissa & 0xFFFFFF)
    raise ValueError(f"{value} does not fit FLOAT-Type")


def bcd_time(when: dt.datetime) -> bytes:
    """AbsoluteTime: century, year, month, day, hour, minute, second, fraction, in BCD."""
    parts = (
        when.year // 100,
        when.year % 100,
        when.month,
        when.day,
        when.hour,
        when.minute,
        when.second,
        0,
    )
    return bytes((p // 10) << 4 | p % 10 for p in parts)


def from_bcd_time(raw: bytes) -> dt.datetime | None:
    """The naive date and time of an AbsoluteTime, or None if it is not one (e.g. all FF)."""
    digits = []
    for byte in raw[:7]:
        hi, lo = byte >> 4, byte & 0x0F
        if hi > 9 or lo > 9:
            return None
        digits.append(hi * 10 + lo)
    if len(digits) != 7:
        return None
    century, year, month, day, hour, minute, second = digits
    try:
        return dt.datetime(century * 100 + year, month, day, hour, minute, second)  # noqa: DTZ001
    except ValueError:
        return None


# ------------------------------------------------------------------ reading


class _Reader:
    """Big-endian fields from a slice of bytes; running short is a `MessageError`."""

    def __init__(self, data: bytes, start: int = 0, end: int | None = None) -> None:
        self._data = data
        self._pos = start
        self._end = len(data) if end is None else end

    @property
    def left(self) -> int:
        return self._end - self._pos

    def take(self, n: int) -> bytes:
        if n > self.left:
            raise MessageError(f"{n} bytes wanted, {self.left} left")
        out = self._data[self._pos : self._pos + n]
        self._pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(_U16.unpack(self.take(2))[0])

    def u32(self) -> int:
        return int(_U32.unpack(self.take(4))[0])

    def sub(self, n: int) -> _Reader:
        """The next `n` bytes as a reader of their own (a length-prefixed part)."""
        if n > self.left:
            raise MessageError(f"a length of {n} with {self.left} bytes left")
        reader = _Reader(self._data, self._pos, self._pos + n)
        self._pos += n
        return reader

    def rest(self, length: int, what: str) -> _Reader:
        """The bytes a length field says follow: they must be exactly what is left."""
        if length != self.left:
            raise MessageError(f"{what} length {length}, {self.left} bytes follow")
        return self.sub(length)

    def end(self, what: str) -> None:
        if self.left:
            raise MessageError(f"{self.left} bytes after {what}")


# ------------------------------------------------------------------ association


@dataclass(frozen=True, slots=True)
class UserInfo:
    """MDSEUserInfoStd (guide "Association Request/Response"), the fields this driver sets.

    Defaults are those of the association request VSCaptureMP sends over serial (docs/intellivue.md
    §2.1): a client (SYST_CLIENT), cold start, min poll period 0.5 s, MTUs 1456, poll profile
    extensions NU_1SEC | RTSA | ENUM | NU_PRIO_LIST, and its MDIB object support profile.
    """

    system_type: int = 0x80000000  # SYST_CLIENT (monitor: SYST_SERVER 0x00800000)
    startup_mode: int = 0x20000000  # COLD_START (WARM_START 0x40000000)
    min_poll_period: int = 4000  # RelativeTime, 1/8 ms: 0.5 s
    max_mtu_rx: int = 1456
    max_mtu_tx: int = 1456
    poll_ext_options: int = 0x8E000000
    # NOM_MDIB_OBJ_SUPPORT (0x0102): (object class, max instances), or none
    object_support: tuple[tuple[int, int], ...] = (
        (NOM_MOC_VMS_MDS, 1),
        (NOM_MOC_VMO_METRIC_NU, 201),
        (0x0009, 60),  # NOM_MOC_VMO_METRIC_SA_RT (waves)
        (0x0005, 16),  # NOM_MOC_VMO_METRIC_ENUM
        (0x002A, 1),  # NOM_MOC_PT_DEMOG
        (0x0036, 1),  # NOM_MOC_VMO_AL_MON
    )
    protocol_version: int = 0x80000000  # MDDL_VERSION1
    nomenclature_version: int = 0x40000000  # NOMEN_VERSION

    def encode(self) -> bytes:
        """The MDSEUserInfoStd bytes."""
        # PollProfileSupport (NOM_POLL_PROFILE_SUPPORT 0x0001) with its one optional package,
        # NOM_ATTR_POLL_PROFILE_EXT (0xF001): {options, ext_attr = empty list}
        ext = _ava(0xF001, _u32(self.poll_ext_options) + _attribute_list(()))
        poll_profile = (
            _u32(0x80000000)  # poll_profile_revision POLL_PROFILE_REV_0
            + _u32(self.min_poll_period)
            + _u32(self.max_mtu_rx)
            + _u32(self.max_mtu_tx)
            + _u32(0xFFFFFFFF)  # max_bw_tx: no estimate
            + _u32(0x60000000)  # P_OPT_DYN_CREATE_OBJECTS | P_OPT_DYN_DELETE_OBJECTS
            + _attribute_list((ext,))
        )
        profiles = [_ava(0x0001, poll_profile)]
        if self.object_support:
            entries = b"".join(
                _u16(NOM_PART_OBJ) + _u16(cls) + _u32(n) for cls, n in self.object_support
            )
            support = _u16(len(self.object_support)) + _u16(len(entries)) + entries
            profiles.append(_ava(0x0102, support))
        return (
            _u32(self.protocol_version)
            + _u32(self.nomenclature_version)
            + _u32(0)  # functional_units
            + _u32(self.system_type)
            + _u32(self.startup_mode)
            + _attribute_list(())  # option_list
            + _attribute_list(profiles)  # supported_aprofiles
        )


# Session parameters of AARQ, AARE: fixed (OpenICE AssociationProtocolImpl; docs/intellivue.md §2.1)
_SESSION_PARAMS: Final = bytes.fromhex(
    "05 08 13 01 00 16 01 02 80 00"  # parameter 0x05, 8 bytes
    "14 02 00 02"  # parameter 0x14, 2 bytes: 0x0002
)
# The presentation PDU's fixed ASN.1 (BER, indefinite lengths) up to the user information,
# AARQ as VSCaptureMP, OpenICE AssociationConnectImpl send (docs/intellivue.md §2.1): CP-type SET,
# mode normal, presentation context list {1: ACSE 2.1.1 (`51 01`), 2: the Data Export abstract
# syntax 1.2.840.10004.2.1.0.0.0.2.1 (`2A 86 48 CE 14 02 01 00 00 00 02 01`)}, then the AARQ
# APDU (`60`) naming application context ...0.3.1, and its user information EXTERNAL (`BE 80
# 28 80`) with direct reference ...0.1.1, indirect reference 2 and the octet-aligned tag `81`.
_AARQ_PRESENTATION: Final = bytes.fromhex(
    "31 80 A0 80 80 01 01 00 00 A2 80 A0 03 00 00 01"
    "A4 80 30 80 02 01 01 06 04 52 01 00 01 30 80 06 02 51 01 00 00 00 00"
    "30 80 02 01 02 06 0C 2A 86 48 CE 14 02 01 00 00 00 01 01"
    "30 80 06 0C 2A 86 48 CE 14 02 01 00 00 00 02 01 00 00 00 00 00 00"
    "61 80 30 80 02 01 01 A0 80 60 80 A1 80 06 0C 2A 86 48 CE 14 02 01 00 00 00 03 01 00 00"
    "BE 80 28 80 06 0C 2A 86 48 CE 14 02 01 00 00 00 01 01 02 01 02 81"
)
# The AARE's as OpenICE AssociationAcceptImpl sends it and accepts from monitors (docs/intellivue.md
# §2.2): the accepted presentation context 2, the AARE APDU (`61`) with result 0 (`A2 03 02 01
# 00`) and source diagnostic 0, then the user information EXTERNAL up to the `81` tag.
_AARE_PRESENTATION: Final = bytes.fromhex(
    "31 80 A0 80 80 01 01 00 00 A2 80 A0 03 00 00 01 A5 80 30 80 80 01 00 81 02 51 01 00 00"
    "30 80 80 01 00 81 0C 2A 86 48 CE 14 02 01 00 00 00 02 01 00 00 00 00"
    "61 80 30 80 02 01 01 A0 80 61 80 A1 80 06 0C 2A 86 48 CE 14 02 01 00 00 00 03 01 00 00"
    "A2 03 02 01 00 A3 05 A1 03 02 01 00 BE 80 28 80 02 01 02 81"
)
# The end-of-contents octets that close the indefinite-length constructions above.
_EOC: Final = bytes(16)
# Where the user information starts: the EXTERNAL's tail (PERSEUS and OpenICE search for it).
_USER_INFO_TAG: Final = bytes.fromhex("BE 80 28 80")
_OCTET_ALIGNED: Final = bytes.fromhex("02 01 02 81")

# Release request (FN_SPDU): LI 24, presentation `C1` LI 22, fully encoded data for context 1,
# RLRQ APDU (`62`) with reason normal (`80 01 00`), end-of-contents (VSCaptureMP rlrq_msg,
# PERSEUS ReleaseReq, OpenICE AssociationFinishImpl; docs/intellivue.md §2.3).
RELEASE_REQUEST: Final = bytes.fromhex(
    "09 18 C1 16 61 80 30 80 02 01 01 A0 80 62 80 80 01 00 00 00 00 00 00 00 00 00"
)
# Release response (DN_SPDU): the same with the RLRE APDU (`63`), reason normal.
RELEASE_RESPONSE: Final = bytes.fromhex(
    "0A 18 C1 16 61 80 30 80 02 01 01 A0 80 63 80 80 01 00 00 00 00 00 00 00 00 00"
)
# Abort (AB_SPDU): LI 46, session parameter 0x11 = 3, presentation `C1` LI 41 (ARP PPDU for
# context 1, transfer syntax 2.1.1), ABRT APDU (`64`) with abort source 1, end-of-contents
# (VSCaptureMP assoc_abort_resp_msg, PERSEUS AssocAbort, OpenICE AssociationAbortImpl).
ABORT: Final = bytes.fromhex(
    "19 2E 11 01 03 C1 29 A0 80 A0 80 30 80 02 01 01 06 02 51 01 00 00 00 00"
    "61 80 30 80 02 01 01 A0 80 64 80 80 01 01 00 00 00 00 00 00 00 00 00 00"
)


def _li(n: int) -> bytes:
    """A session LI: one byte up to 254, else FF and two bytes (guide "Session Headers")."""
    return bytes((n,)) if n <= 254 else b"\xff" + _u16(n)


def _ber_length(n: int) -> bytes:
    """A BER length in the two-byte long form (`82 hi lo`), as VSCaptureMP's request has it."""
    return b"\x82" + _u16(n)


def _session(kind: Session, presentation: bytes, info: bytes, length: bytes) -> bytes:
    pdu = presentation + length + info + _EOC
    body = _SESSION_PARAMS + b"\xc1" + _li(len(pdu)) + pdu
    return bytes((kind,)) + _li(len(body)) + body


def association_request(info: UserInfo | None = None) -> bytes:
    """The association request; with the defaults, byte for byte VSCaptureMP's (300 bytes)."""
    encoded = (info or UserInfo()).encode()
    return _session(Session.CONNECT, _AARQ_PRESENTATION, encoded, _ber_length(len(encoded)))


def association_response(info: UserInfo) -> bytes:
    """An association response (for the simulator), OpenICE's layout, short BER `81 nn`."""
    encoded = info.encode()
    if len(encoded) > 255:
        raise ValueError("user information too long for a one-byte BER length")
    return _session(Session.ACCEPT, _AARE_PRESENTATION, encoded, b"\x81" + bytes((len(encoded),)))


def user_info(message: bytes) -> dict[str, int]:
    """The version and system fields of an AARQ's or AARE's user information, by name.

    Found by the pattern search PERSEUS and OpenICE use (`BE 80 28 80`, then `02 01 02 81` and a
    BER length). Raises `MessageError` if the message has none.
    """
    tag = message.find(_USER_INFO_TAG)
    start = message.find(_OCTET_ALIGNED, tag) if tag >= 0 else -1
    if start < 0:
        raise MessageError("no user information")
    reader = _Reader(message, start + len(_OCTET_ALIGNED))
    first = reader.u8()
    if first < 0x80:
        length = first
    elif first in {0x81, 0x82}:
        length = int.from_bytes(reader.take(first - 0x80), "big")
    else:
        raise MessageError(f"BER length form {first:#x}")
    body = reader.sub(length)
    return {
        "protocol_version": body.u32(),
        "nomenclature_version": body.u32(),
        "functional_units": body.u32(),
        "system_type": body.u32(),
        "startup_mode": body.u32(),
    }


@dataclass(frozen=True, slots=True)
class SessionMessage:
    """An association control message; only its type matters to this driver."""

    kind: Session
    data: bytes = field(repr=False)


# ------------------------------------------------------------------ Data Export
# The parts of a poll result are NamedTuples: a decode makes several of each per message, and
# a tuple is made several times faster than a frozen dataclass (bench/decode.py).


class Attribute(NamedTuple):
    """AVAType: attribute id and its value bytes."""

    attribute_id: int
    value: bytes


class NuObservation(NamedTuple):
    """NuObsValue: a numeric's physio id (SCADA), MeasurementState, unit (DIM), raw FLOAT."""

    physio_id: int
    state: int
    unit_code: int
    value: int

    def encode(self) -> bytes:
        """The 10 bytes of a NuObsValue."""
        return _u16(self.physio_id) + _u16(self.state) + _u16(self.unit_code) + _u32(self.value)


class Observation(NamedTuple):
    """ObservationPoll: an object handle and its attributes."""

    handle: int
    attributes: tuple[Attribute, ...]

    @classmethod
    def numeric(
        cls,
        handle: int,
        values: Sequence[NuObservation],
        *,
        stamp: bytes | None = None,
    ) -> Observation:
        """A numeric object as a monitor sends it.

        One value goes as NOM_ATTR_NU_VAL_OBS, several (NBP, ABP) as NOM_ATTR_NU_CMPD_VAL_OBS;
        `stamp` as NOM_ATTR_TIME_STAMP_ABS.
        """
        if len(values) == 1:
            attrs = [Attribute(NOM_ATTR_NU_VAL_OBS, values[0].encode())]
        else:
            body = b"".join(v.encode() for v in values)
            value = _u16(len(values)) + _u16(len(body)) + body
            attrs = [Attribute(NOM_ATTR_NU_CMPD_VAL_OBS, value)]
        if stamp is not None:
            attrs.append(Attribute(NOM_ATTR_TIME_STAMP_ABS, stamp))
        return cls(handle, tuple(attrs))


class ContextPoll(NamedTuple):
    """SingleContextPoll: the observations of one context (e.g. one measurement server)."""

    context_id: int
    observations: tuple[Observation, ...]


class Linked(NamedTuple):
    """RorlsId of a linked result part: state (first 1, middle 2, last 3) and its counter."""

    state: int
    counter: int


class PollResult(NamedTuple):
    """A poll data result (PollMdibDataReply), whole (RORS) or one part of it (ROLRS)."""

    invoke_id: int
    poll_number: int
    rel_time: int
    abs_time: bytes
    polled_type: tuple[int, int]
    attr_group: int
    contexts: tuple[ContextPoll, ...]
    linked: Linked | None = None
    # an extended poll's result (NOM_ACT_POLL_MDIB_DATA_EXT) and its PollMdibDataReplyExt
    # sequence_no; 0 for a single poll's
    extended: bool = False
    sequence_no: int = 0

    @property
    def observations(self) -> tuple[Observation, ...]:
        """Every observation of every context, in order."""
        return tuple(o for c in self.contexts for o in c.observations)


@dataclass(frozen=True, slots=True)
class PollRequest:
    """A poll data request (PollMdibDataReq, or the extended one) addressed to the MDS.

    `period`: the extended poll's NOM_ATTR_TIME_PD_POLL (RelativeTime, 1/8 ms), if it has one.
    """

    invoke_id: int
    poll_number: int
    polled_type: tuple[int, int]
    attr_group: int
    extended: bool = False
    period: int | None = None


@dataclass(frozen=True, slots=True)
class EventReport:
    """An event report (ROIV); the MDS Create Event has event type NOM_NOTI_MDS_CREAT."""

    invoke_id: int
    confirmed: bool
    managed_object: tuple[int, int, int]
    event_time: int
    event_type: int
    info: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class EventReportResult:
    """The result that confirms an event report (RORS, CMD_CONFIRMED_EVENT_REPORT)."""

    invoke_id: int
    managed_object: tuple[int, int, int]
    event_time: int
    event_type: int


@dataclass(frozen=True, slots=True)
class RemoteError:
    """ROER: the monitor could not carry out an invoke."""

    invoke_id: int
    error_value: int


@dataclass(frozen=True, slots=True)
class OtherCommand:
    """A well-formed Data Export command this driver has no use for (e.g. a GET).

    `action_type`: for an action or its result, the action (e.g. a poll of another kind).
    """

    ro_type: RoType
    invoke_id: int
    command_type: int
    action_type: int | None = None


Message = (
    SessionMessage
    | EventReport
    | EventReportResult
    | PollRequest
    | PollResult
    | RemoteError
    | OtherCommand
)


def _ava(attribute_id: int, value: bytes) -> bytes:
    return _u16(attribute_id) + _u16(len(value)) + value


def _attribute_list(avas: Iterable[bytes]) -> bytes:
    items = list(avas)
    body = b"".join(items)
    return _u16(len(items)) + _u16(len(body)) + body


def _managed_object(obj: tuple[int, int, int]) -> bytes:
    return _u16(obj[0]) + _u16(obj[1]) + _u16(obj[2])


def _export(ro_type: RoType, ro_header: bytes, command: bytes) -> bytes:
    """SPpdu + ROapdus + RO*apdu header (ending before its length) + command."""
    ro = ro_header + _u16(len(command)) + command
    return _u16(_SESSION_ID) + _u16(_P_CONTEXT_ID) + _u16(ro_type) + _u16(len(ro)) + ro


def _poll_argument(action_type: int, body: bytes) -> bytes:
    return (
        _managed_object(MDS)
        + _u32(0)  # scope: fixed 0
        + _u16(action_type)
        + _u16(len(body))
        + body
    )


def poll_request(
    invoke_id: int,
    poll_number: int,
    *,
    attr_group: int = 0,
    polled_type: tuple[int, int] = NUMERICS,
) -> bytes:
    """A single poll (of all numerics by default; attribute group 0: all), as VSCaptureMP's."""
    body = _u16(poll_number) + _u16(polled_type[0]) + _u16(polled_type[1]) + _u16(attr_group)
    command = _poll_argument(NOM_ACT_POLL_MDIB_DATA, body)
    return _export(RoType.ROIV, _u16(invoke_id) + _u16(CMD_CONFIRMED_ACTION), command)


def extended_poll_request(
    invoke_id: int,
    poll_number: int,
    *,
    period: int | None,
    attr_group: int = 0,
    polled_type: tuple[int, int] = NUMERICS,
) -> bytes:
    """An extended poll (NOM_ACT_POLL_MDIB_DATA_EXT), asking for results for `period`.

    `period` is a RelativeTime (1/8 ms) sent as NOM_ATTR_TIME_PD_POLL; None sends an empty
    attribute list (one result, as a single poll). VSCaptureMP's ``ext_poll_request_msg5`` is
    ``extended_poll_request(1, 1, period=240000)`` (30 s).
    """
    ext = () if period is None else (_ava(NOM_ATTR_TIME_PD_POLL, _u32(period)),)
    body = (
        _u16(poll_number)
        + _u16(polled_type[0])
        + _u16(polled_type[1])
        + _u16(attr_group)
        + _attribute_list(ext)
    )
    command = _poll_argument(NOM_ACT_POLL_MDIB_DATA_EXT, body)
    return _export(RoType.ROIV, _u16(invoke_id) + _u16(CMD_CONFIRMED_ACTION), command)


def mds_create_event(*, invoke_id: int, event_time: int, abs_time: bytes, rel_time: int) -> bytes:
    """The MDS Create Event Report a monitor sends after its association response.

    Attributes: NOM_ATTR_TIME_ABS, NOM_ATTR_TIME_REL (clients read both, docs/intellivue.md §3) and
    NOM_ATTR_VMS_MDS_STAT = operating.
    """
    attrs = _attribute_list(
        (
            _ava(NOM_ATTR_TIME_ABS, abs_time),
            _ava(NOM_ATTR_TIME_REL, _u32(rel_time)),
            _ava(NOM_ATTR_VMS_MDS_STAT, _u16(MDS_STATUS_OPERATING)),
        )
    )
    info = _managed_object(MDS) + attrs  # MdsCreateInfo
    command = (
        _managed_object(MDS) + _u32(event_time) + _u16(NOM_NOTI_MDS_CREAT) + _u16(len(info)) + info
    )
    return _export(RoType.ROIV, _u16(invoke_id) + _u16(CMD_CONFIRMED_EVENT_REPORT), command)


def connect_indication(*, ip: bytes, mac: bytes, event_time: int) -> bytes:
    """The connect indication a monitor broadcasts on the LAN (for the simulator).

    The nomenclature version, then an ROIV unconfirmed event report of the MDS, event
    NOM_NOTI_CONN_INDIC, whose info is an attribute list: here its IpAddressInfo only (a real
    monitor adds its system id, model, bed label, protocol support...).
    """
    info = _attribute_list((_ava(NOM_ATTR_NET_ADDR_INFO, mac + ip + b"\xff\xff\xff\x00"),))
    command = (
        _managed_object(MDS) + _u32(event_time) + _u16(NOM_NOTI_CONN_INDIC) + _u16(len(info)) + info
    )
    ro = _u16(0) + _u16(CMD_EVENT_REPORT) + _u16(len(command)) + command
    return NOMENCLATURE_HEADER + _u16(RoType.ROIV) + _u16(len(ro)) + ro


def event_report_result(event: EventReport) -> bytes:
    """The result confirming `event`: its invoke id, object, time and type copied (PERSEUS)."""
    command = (
        _managed_object(event.managed_object)
        + _u32(event.event_time)
        + _u16(event.event_type)
        + _u16(0)
    )
    return _export(RoType.RORS, _u16(event.invoke_id) + _u16(CMD_CONFIRMED_EVENT_REPORT), command)


def remote_error(invoke_id: int, error_value: int = NO_SUCH_ACTION) -> bytes:
    """An ROER answering `invoke_id` (for the simulator: an action it does not offer)."""
    ro = _u16(invoke_id) + _u16(error_value) + _u16(0)
    return _u16(_SESSION_ID) + _u16(_P_CONTEXT_ID) + _u16(RoType.ROER) + _u16(len(ro)) + ro


def _observation(obs: Observation) -> bytes:
    return _u16(obs.handle) + _attribute_list(_ava(a.attribute_id, a.value) for a in obs.attributes)


def _poll_info(contexts: Sequence[ContextPoll]) -> bytes:
    items = []
    for context in contexts:
        observations = [_observation(o) for o in context.observations]
        items.append(_u16(context.context_id) + _attribute_list(observations))
    return _attribute_list(items)


def poll_result(result: PollResult) -> bytes:
    """The user data of `result`: a RORS, or an ROLRS part when `result.linked` is set."""
    sequence = _u16(result.sequence_no) if result.extended else b""
    reply = (
        _u16(result.poll_number)
        + sequence
        + _u32(result.rel_time)
        + result.abs_time
        + _u16(result.polled_type[0])
        + _u16(result.polled_type[1])
        + _u16(result.attr_group)
        + _poll_info(result.contexts)
    )
    action = NOM_ACT_POLL_MDIB_DATA_EXT if result.extended else NOM_ACT_POLL_MDIB_DATA
    command = _managed_object(MDS) + _u16(action) + _u16(len(reply)) + reply
    header = _u16(result.invoke_id) + _u16(CMD_CONFIRMED_ACTION)
    if result.linked is None:
        return _export(RoType.RORS, header, command)
    linked = bytes(result.linked)
    return _export(RoType.ROLRS, linked + header, command)


# ActionResult header (10) + PollMdibDataReply header (20; 22 extended) + PollInfoList (4) +
# SingleContextPoll header (6): what a result's command holds besides its observations
_RESULT_OVERHEAD: Final = 10 + 20 + 4 + 6


def _chunks(result: PollResult, mtu: int) -> list[tuple[Observation, ...]]:
    """The observations of `result` in runs whose results fit `mtu` (one at least each)."""
    overhead = _RESULT_OVERHEAD + (2 if result.extended else 0)
    chunks: list[list[Observation]] = [[]]
    used = overhead
    for obs in result.observations:
        size = len(_observation(obs))
        if chunks[-1] and used + size > mtu:
            chunks.append([])
            used = overhead
        chunks[-1].append(obs)
        used += size
    return [tuple(c) for c in chunks]


def _part(result: PollResult, observations: tuple[Observation, ...], linked: Linked) -> bytes:
    context_id = result.contexts[0].context_id if result.contexts else 0
    contexts = (ContextPoll(context_id, observations),)
    return poll_result(result._replace(contexts=contexts, linked=linked))


def poll_results(result: PollResult, *, mtu: int) -> list[bytes]:
    """`result` as the messages a monitor sends, each command within `mtu` bytes.

    One RORS if it fits; else linked parts (ROLRS first, middle..., last), an observation
    each at least, and a closing RORS with an empty PollInfoList (guide "Linked results";
    docs/intellivue.md §6.2). One context only.
    """
    chunks = _chunks(result, mtu)
    if len(chunks) == 1:
        return [poll_result(result)]  # it fits, or one observation over `mtu`: nothing to split
    out = []
    for i, chunk in enumerate(chunks, start=1):
        if i == 1:
            state = RORLS_FIRST
        elif i == len(chunks):
            state = RORLS_LAST
        else:
            state = RORLS_NOT_FIRST_NOT_LAST
        out.append(_part(result, chunk, Linked(state, i)))
    out.append(poll_result(result._replace(contexts=())))
    return out


def periodic_results(result: PollResult, *, mtu: int, count: int) -> tuple[list[bytes], int]:
    """One delivery of a periodic extended poll: linked parts, and the series' counter after.

    An extended poll with a period is answered by one linked series for the whole period
    (docs/intellivue.md §6.4): the series' first part (`count` 0) is ROLRS first, every later
    part ROLRS not-first-not-last, the counter (a u8) going on from `count`; the series ends
    with `periodic_end`.
    """
    out = []
    for chunk in _chunks(result, mtu):
        count += 1
        state = RORLS_FIRST if count == 1 else RORLS_NOT_FIRST_NOT_LAST
        out.append(_part(result, chunk, Linked(state, count & 0xFF)))
    return out, count


def periodic_end(result: PollResult) -> bytes:
    """The RORS with an empty PollInfoList that ends a periodic extended poll's series."""
    return poll_result(result._replace(contexts=(), linked=None))


# ------------------------------------------------------------------ parsing


def _attributes(reader: _Reader) -> tuple[Attribute, ...]:
    count = reader.u16()
    body = reader.sub(reader.u16())
    out = []
    for _ in range(count):
        attribute_id = body.u16()
        out.append(Attribute(attribute_id, body.take(body.u16())))
    body.end("the attribute list")
    return tuple(out)


# Fixed parts of a Data Export command, read with struct.unpack_from at offsets (the decode of
# a poll result is the hot path, bench/decode.py): lengths are checked against the enclosing
# part's end by hand, since unpack_from only knows the whole buffer's.
_SPPDU_RO: Final = struct.Struct(">HHHH")  # session id, p_context_id, ro_type, length
_RO_HEADER: Final = struct.Struct(">HHH")  # invoke id, command type, length
_ACTION_RESULT: Final = struct.Struct(">6xHH")  # managed object, action type, length
_REPLY: Final = struct.Struct(">HI8sHHHHH")  # PollMdibDataReply up to the PollInfoList
_REPLY_EXT: Final = struct.Struct(">HHI8sHHHHH")  # PollMdibDataReplyExt likewise
_LIST: Final = struct.Struct(">HHH")  # an id (context, handle) then a list's count and length
_AVA: Final = struct.Struct(">HH")  # attribute id and length; a list's count and length
_NU_VALUE: Final = struct.Struct(">HHHI")  # NuObsValue
# A NamedTuple made from a tuple of its fields in C, without its Python-level __new__ (several
# are made per message; the fields' types are those the struct formats give).
_new = tuple.__new__
_RO_TYPES: Final[dict[int, RoType]] = {t.value: t for t in RoType}
# ObservationPoll bytes -> the Observation they are: a monitor sends the same observation again
# and again (a numeric that did not change, the cuff's last determination for minutes), and a
# dictionary lookup of the bytes is cheaper than parsing them (bench/decode.py). Bounded.
_SEEN: Final[dict[bytes, Observation]] = {}
_SEEN_MAX: Final = 4096


def _fits(pos: int, n: int, end: int, what: str) -> int:
    """`pos + n`, the end of a part of `n` bytes at `pos`, which must not pass `end`."""
    if pos + n > end:
        raise MessageError(f"{what}: {n} bytes wanted, {end - pos} left")
    return pos + n


def _observation_at(data: bytes, pos: int, end: int) -> tuple[Observation, int]:
    """The ObservationPoll at `pos` (handle, then its AttributeList), and where it ends.

    An observation seen before is taken from `_SEEN` by its bytes, not parsed again.
    """
    if pos + 6 > end:
        raise MessageError("an observation cut short")
    handle, count, attrs_length = _LIST.unpack_from(data, pos)
    stop = pos + 6 + attrs_length
    if stop > end:
        raise MessageError(f"attributes of {attrs_length} bytes, {end - pos - 6} left")
    raw = data[pos:stop]
    known = _SEEN.get(raw)
    if known is not None:
        return known, stop
    pos += 6
    unpack_ava = _AVA.unpack_from
    attributes = []
    for _ in range(count):
        if pos + 4 > stop:
            raise MessageError("an attribute cut short")
        attribute_id, n = unpack_ava(data, pos)
        pos += 4
        if pos + n > stop:
            raise MessageError(f"an attribute of {n} bytes, {stop - pos} left")
        attributes.append(_new(Attribute, (attribute_id, data[pos : pos + n])))
        pos += n
    if pos != stop:
        raise MessageError(f"{stop - pos} bytes after the attribute list")
    observation: Observation = _new(Observation, (handle, tuple(attributes)))
    if len(_SEEN) >= _SEEN_MAX:
        _SEEN.clear()
    _SEEN[raw] = observation
    return observation, stop


def _parse_poll_reply(
    data: bytes, pos: int, end: int, invoke_id: int, linked: Linked | None, *, extended: bool
) -> PollResult:
    """The PollMdibDataReply (or its extended form) in `data[pos:end]`.

    Every count and length is checked against its enclosing part's end, inline (this is the
    decode's hot path: no helper calls per attribute).
    """
    if extended:
        _fits(pos, _REPLY_EXT.size, end, "the poll reply")
        (poll_number, sequence_no, rel_time, abs_time, partition, code, attr_group, n_contexts,
         length) = _REPLY_EXT.unpack_from(data, pos)  # fmt: skip
        pos += _REPLY_EXT.size
    else:
        _fits(pos, _REPLY.size, end, "the poll reply")
        (poll_number, rel_time, abs_time, partition, code, attr_group, n_contexts,
         length) = _REPLY.unpack_from(data, pos)  # fmt: skip
        sequence_no = 0
        pos += _REPLY.size
    if pos + length != end:
        raise MessageError(f"PollInfoList length {length}, {end - pos} bytes follow")
    unpack_list = _LIST.unpack_from
    contexts = []
    for _ in range(n_contexts):
        if pos + 6 > end:
            raise MessageError("a context cut short")
        context_id, n_obs, obs_length = unpack_list(data, pos)
        pos += 6
        obs_end = pos + obs_length
        if obs_end > end:
            raise MessageError(f"observations of {obs_length} bytes, {end - pos} left")
        observations = []
        for _ in range(n_obs):
            observation, pos = _observation_at(data, pos, obs_end)
            observations.append(observation)
        if pos != obs_end:
            raise MessageError(f"{obs_end - pos} bytes after the observations")
        contexts.append(_new(ContextPoll, (context_id, tuple(observations))))
    if pos != end:
        raise MessageError(f"{end - pos} bytes after the PollInfoList")
    return _new(PollResult, (
        invoke_id, poll_number, rel_time, abs_time, (partition, code), attr_group,
        tuple(contexts), linked, extended, sequence_no,
    ))  # fmt: skip


def _parse_session(data: bytes) -> SessionMessage:
    kind = Session(data[0])
    reader = _Reader(data, 1)
    li = reader.u8()
    if li == 0xFF:
        li = reader.u16()
    reader.rest(li, "session LI")
    return SessionMessage(kind, data)


def _parse_roiv(reader: _Reader) -> Message:
    invoke_id = reader.u16()
    command_type = reader.u16()
    command = reader.rest(reader.u16(), "ROIV")
    if command_type in {CMD_EVENT_REPORT, CMD_CONFIRMED_EVENT_REPORT}:
        obj = (command.u16(), command.u16(), command.u16())
        event_time = command.u32()
        event_type = command.u16()
        body = command.rest(command.u16(), "event report")
        info = body.take(body.left)
        return EventReport(
            invoke_id, command_type == CMD_CONFIRMED_EVENT_REPORT, obj, event_time, event_type, info
        )
    if command_type == CMD_CONFIRMED_ACTION:
        command.take(6 + 4)  # managed object, scope
        action_type = command.u16()
        body = command.rest(command.u16(), "action argument")
        if action_type in {NOM_ACT_POLL_MDIB_DATA, NOM_ACT_POLL_MDIB_DATA_EXT}:
            poll_number = body.u16()
            polled_type = (body.u16(), body.u16())
            attr_group = body.u16()
            if action_type == NOM_ACT_POLL_MDIB_DATA:
                body.end("the poll request")
                return PollRequest(invoke_id, poll_number, polled_type, attr_group)
            period = None
            for attr in _attributes(body):
                if attr.attribute_id == NOM_ATTR_TIME_PD_POLL and len(attr.value) == 4:
                    period = int.from_bytes(attr.value, "big")
            body.end("the extended poll request")
            return PollRequest(
                invoke_id, poll_number, polled_type, attr_group, extended=True, period=period
            )
        return OtherCommand(RoType.ROIV, invoke_id, command_type, action_type)
    return OtherCommand(RoType.ROIV, invoke_id, command_type)


def _parse_result(data: bytes, pos: int, ro_type: RoType) -> Message:
    end = len(data)
    linked = None
    if ro_type is RoType.ROLRS:
        _fits(pos, 2, end, "ROLRS")
        linked = _new(Linked, (data[pos], data[pos + 1]))
        pos += 2
    _fits(pos, 6, end, "RORS")
    invoke_id, command_type, length = _RO_HEADER.unpack_from(data, pos)
    pos += 6
    if pos + length != end:
        raise MessageError(f"{ro_type.name} length {length}, {end - pos} bytes follow")
    if command_type == CMD_CONFIRMED_ACTION:
        _fits(pos, 10, end, "the action result")
        action_type, body_length = _ACTION_RESULT.unpack_from(data, pos)
        pos += 10
        if pos + body_length != end:
            raise MessageError(f"action result length {body_length}, {end - pos} bytes follow")
        if action_type in {NOM_ACT_POLL_MDIB_DATA, NOM_ACT_POLL_MDIB_DATA_EXT}:
            extended = action_type == NOM_ACT_POLL_MDIB_DATA_EXT
            return _parse_poll_reply(data, pos, end, invoke_id, linked, extended=extended)
        return OtherCommand(ro_type, invoke_id, command_type, action_type)
    if command_type == CMD_CONFIRMED_EVENT_REPORT and linked is None:
        command = _Reader(data, pos, end)
        obj = (command.u16(), command.u16(), command.u16())
        event_time = command.u32()
        event_type = command.u16()
        command.rest(command.u16(), "event report result")
        return EventReportResult(invoke_id, obj, event_time, event_type)
    return OtherCommand(ro_type, invoke_id, command_type)


def parse_message(data: bytes) -> Message:
    """The message in one frame's user data.

    Raises:
        MessageError: not a well-formed message (unknown first byte, lengths that do not add
            up, a field cut short).
    """
    if not data:
        raise MessageError("empty")
    if data[0] in Session._value2member_map_:
        return _parse_session(data)
    if len(data) < _SPPDU_RO.size:
        raise MessageError(f"{len(data)} bytes: no Data Export message")
    session_id, _, raw_type, length = _SPPDU_RO.unpack_from(data)
    if data.startswith(NOMENCLATURE_HEADER) and raw_type == RoType.ROIV:
        # the connect indication a monitor broadcasts on the LAN has the nomenclature version
        # where a Data Export command has its session header (docs/intellivue.md §10)
        session_id = _SESSION_ID
    if session_id != _SESSION_ID:
        raise MessageError(f"first byte {data[0]:#04x}: no session or Data Export message")
    if length != len(data) - _SPPDU_RO.size:
        raise MessageError(f"ROapdus length {length}, {len(data) - _SPPDU_RO.size} bytes follow")
    ro_type = _RO_TYPES.get(raw_type)
    if ro_type is None:
        raise MessageError(f"ro_type {raw_type}")
    if ro_type is RoType.RORS or ro_type is RoType.ROLRS:
        return _parse_result(data, _SPPDU_RO.size, ro_type)
    ro = _Reader(data, _SPPDU_RO.size)
    if ro_type is RoType.ROIV:
        return _parse_roiv(ro)
    invoke_id = ro.u16()
    error_value = ro.u16()
    ro.rest(ro.u16(), "ROER")
    return RemoteError(invoke_id, error_value)


def numerics(observation: Observation) -> tuple[NuObservation, ...]:
    """The NuObsValues of an observation: NU_VAL_OBS and each of NU_CMPD_VAL_OBS, in order.

    Raises:
        MessageError: a numeric attribute of the wrong size.
    """
    return tuple(_new(NuObservation, v) for v in nu_values(observation.attributes))


def nu_values(attributes: Iterable[Attribute]) -> list[tuple[int, int, int, int]]:
    """`numerics` as plain (physio id, state, unit, FLOAT) tuples: the decode's hot path.

    Raises:
        MessageError: a numeric attribute of the wrong size.
    """
    out: list[tuple[int, int, int, int]] = []
    for attribute_id, value in attributes:
        if attribute_id == NOM_ATTR_NU_VAL_OBS:
            if len(value) != _NU_VALUE.size:
                raise MessageError(f"NuObsValue of {len(value)} bytes")
            out.append(_NU_VALUE.unpack(value))
        elif attribute_id == NOM_ATTR_NU_CMPD_VAL_OBS:
            if len(value) < 4:
                raise MessageError("NuObsValueCmp cut short")
            count, length = _AVA.unpack_from(value)
            if length != len(value) - 4 or length != count * _NU_VALUE.size:
                raise MessageError(f"NuObsValueCmp of {count} values in {length} bytes")
            out += _NU_VALUE.iter_unpack(value[4:])
    return out


def time_stamp(observation: Observation) -> bytes | None:
    """The observation's NOM_ATTR_TIME_STAMP_ABS (8 BCD bytes), if it has one."""
    for attr in observation.attributes:
        if attr.attribute_id == NOM_ATTR_TIME_STAMP_ABS:
            return attr.value
    return None


def mds_times(event: EventReport) -> tuple[bytes | None, int | None]:
    """The MDS's NOM_ATTR_TIME_ABS (8 BCD bytes) and NOM_ATTR_TIME_REL of an MDS Create Event.

    MdsCreateInfo is the MDS's ManagedObjectId and an attribute list (docs/intellivue.md §3);
    either time is None when the event does not carry it.

    Raises:
        MessageError: the event's info is not an MdsCreateInfo.
    """
    reader = _Reader(event.info)
    reader.take(6)
    abs_time: bytes | None = None
    rel_time: int | None = None
    for attr in _attributes(reader):
        if attr.attribute_id == NOM_ATTR_TIME_ABS and len(attr.value) == 8:
            abs_time = attr.value
        elif attr.attribute_id == NOM_ATTR_TIME_REL and len(attr.value) == 4:
            rel_time = int.from_bytes(attr.value, "big")
    return abs_time, rel_time
