"""Sans-I/O IntelliVue Data Export client: the session, and numerics as Vigil samples.

Session (guide "Association", "Poll Data Request"; docs/intellivue.md §2-§9)::

    host                                   monitor
    association request (0D)  -------->
                              <--------    association response (0E)
                              <--------    MDS Create Event Report (ROIV, event 0x0D06)
    MDS Create Event Result   -------->
    extended poll, numerics   -------->    every 5 s, asking for results for 15 s
                              <--------    a result every second (ROLRS parts of one series)
    (or, `PollMode.SINGLE`: a single poll every timer tick, 1 s of daemon time,
                              <--------    answered by a RORS, or ROLRS parts then a RORS)

Real monitors' clients (VSCaptureMP, OpenICE) use the extended poll (`PollMode.EXTENDED`, the
default); the single poll is the documented fallback (``poll = "single"`` in the config), and
the link falls back to it by itself when the monitor answers an extended poll with an error
(docs/intellivue.md §5). The association request is re-sent every 5 s until a response comes; a
refusal or an abort ends the session (`ProtocolError`), and so does a release request from the
monitor, once it has been answered with a release response. The monitor drops an association
that hears nothing for 10 s (with the 0.5 s minimum poll period requested, guide
"PollProfileSupport"): the poll (its renewal, or the 1 s single poll) is the keep-alive. Polls
unanswered for 10 s while the monitor still sends other messages (an ROER to every poll, say)
end the session too ("association lost"); a monitor that falls silent is left to the driver's
quiet time ("no valid frame", `drivers.serialport`), which is also 10 s, so the two failures
keep their own names. The supervisor reconnects, which re-associates.

Nothing is ignored silently (docs/intellivue.md §8): every well-formed message the link has no
use for is counted in ``stats.dropped`` by what it is, with its code, e.g.
``unsupported_action 0xF13B``, ``unknown_object_class 0x0009``, ``unsupported_event 0x0D17``,
``remote_error 0x0009``, ``unsupported_command 0x0003`` (at most 16 codes a reason; the rest
count as ``<reason> other``), and every numeric it does not map as ``unmapped_numeric``.

Numerics (`NUMERICS_MAP`): ECG heart rate, SpO2, pleth pulse rate, NBP and ABP systolic,
diastolic and mean, matched by physio id and checked against the expected unit (a numeric in
another unit is dropped and counted ``wrong_unit``). A
numeric the monitor marks not usable (MeasurementState high octet: invalid, unavailable...) or
that holds a FLOAT special value (NaN, NRes, +/-INF) is an invalid sample whose reason names
the state or the special value. Samples are stamped with the daemon clock at receipt.

NIBP: the alarm core takes every NIBP_SYS, NIBP_DIA, NIBP_MEAN triple as one new cuff
determination, so they are emitted only when a determination is new: its NOM_ATTR_TIME_STAMP_ABS
changed, or, without a time stamp, its values or states changed. `CuffMemory` holds the last one
passed on and outlives a connection, so a reconnect does not repeat the determination on show.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from types import MappingProxyType
from typing import Final

from drivers.base import DriverStats
from drivers.intellivue.framing import FrameDecoder, encode_frame
from drivers.intellivue.messages import (
    NOM_MOC_VMO_METRIC_NU,
    NOM_NOTI_MDS_CREAT,
    RELEASE_RESPONSE,
    EventReport,
    EventReportResult,
    MessageError,
    Observation,
    OtherCommand,
    PollRequest,
    PollResult,
    RemoteError,
    Session,
    SessionMessage,
    association_request,
    decode_float,
    event_report_result,
    extended_poll_request,
    from_bcd_time,
    mds_times,
    nu_values,
    numerics,
    parse_message,
    poll_request,
    time_stamp,
)
from drivers.link import ProtocolError, Received
from drivers.samples import judged
from kernel.vocabulary import NIBP_PARAMS, Param, Sample

__all__ = [
    "ASSOCIATION_RETRY_S",
    "EXTENDED_PERIOD_S",
    "EXTENDED_RENEW_S",
    "NOM_DIM_BEAT_PER_MIN",
    "NOM_DIM_MMHG",
    "NOM_DIM_PERCENT",
    "NUMERICS_MAP",
    "POLL_LOST_S",
    "STATE_BITS",
    "CuffMemory",
    "Expected",
    "IntelliVueLink",
    "MessageDrop",
    "PollMode",
    "count_unused",
    "decode_capture",
    "decode_messages",
    "poll_samples",
    "state_problem",
    "unused_reason",
]

# Units (partition DIM; guide "Units of Measurement", VSCaptureMP Class2.cs UnitCode).
NOM_DIM_BEAT_PER_MIN: Final = 0x0AA0
NOM_DIM_PERCENT: Final = 0x0220
NOM_DIM_MMHG: Final = 0x0F20


@dataclass(frozen=True, slots=True)
class Expected:
    """What a mapped numeric becomes, and the unit it must come in."""

    param: Param
    unit_code: int


# physio id (partition SCADA) -> Vigil parameter. Matched by table, not by arithmetic: the
# pleth pulse rate 0x4822 is MDC_PULS_OXIM_PULS_RATE by meaning only (docs/intellivue.md §7.4).
NUMERICS_MAP: Final[Mapping[int, Expected]] = MappingProxyType(
    {
        0x4182: Expected(Param.HR, NOM_DIM_BEAT_PER_MIN),  # NOM_ECG_CARD_BEAT_RATE
        0x4BB8: Expected(Param.SPO2, NOM_DIM_PERCENT),  # NOM_PULS_OXIM_SAT_O2
        0x4822: Expected(Param.PR, NOM_DIM_BEAT_PER_MIN),  # NOM_PLETH_PULS_RATE
        0x4A05: Expected(Param.NIBP_SYS, NOM_DIM_MMHG),  # NOM_PRESS_BLD_NONINV_SYS
        0x4A06: Expected(Param.NIBP_DIA, NOM_DIM_MMHG),  # NOM_PRESS_BLD_NONINV_DIA
        0x4A07: Expected(Param.NIBP_MEAN, NOM_DIM_MMHG),  # NOM_PRESS_BLD_NONINV_MEAN
        0x4A15: Expected(Param.ABP_SYS, NOM_DIM_MMHG),  # NOM_PRESS_BLD_ART_ABP_SYS
        0x4A16: Expected(Param.ABP_DIA, NOM_DIM_MMHG),  # NOM_PRESS_BLD_ART_ABP_DIA
        0x4A17: Expected(Param.ABP_MEAN, NOM_DIM_MMHG),  # NOM_PRESS_BLD_ART_ABP_MEAN
    }
)

_NIBP_ORDER: Final = (Param.NIBP_SYS, Param.NIBP_DIA, Param.NIBP_MEAN)
# NUMERICS_MAP as a plain dict of (param, unit, place among SYS, DIA, MEAN or -1), for the
# decode's hot path (a mappingproxy lookup and an enum's hash in a set are slower;
# bench/decode.py)
_LOOKUP: Final[dict[int, tuple[Param, int, int]]] = {
    physio_id: (e.param, e.unit_code, _NIBP_ORDER.index(e.param) if e.param in NIBP_PARAMS else -1)
    for physio_id, e in NUMERICS_MAP.items()
}

# MeasurementState bits of the high octet: any of them makes the value unusable (guide
# "MeasurementState": valid only if the high octet is 0; docs/intellivue.md §7.2). In this order the
# first one set is the sample's reason. TEST and DEMO data are not the patient's.
STATE_BITS: Final[tuple[tuple[int, str], ...]] = (
    (0x8000, "invalid"),
    (0x2000, "unavailable"),
    (0x4000, "questionable"),
    (0x1000, "calibration"),
    (0x0800, "test_data"),
    (0x0400, "demo_data"),
)

# The association request is sent again when no response came within this (daemon seconds).
ASSOCIATION_RETRY_S: Final = 5.0
# Polls unanswered for this long: the monitor has dropped the association (its own timeout is
# 10 s, guide "PollProfileSupport"; PERSEUS uses the same figure).
POLL_LOST_S: Final = 10.0
# The extended poll asks for results for EXTENDED_PERIOD_S and is renewed every
# EXTENDED_RENEW_S, before the period ends (a new request replaces the running one, as clients
# that renew every second rely on); the renewal is also the keep-alive, well inside the
# monitor's 10 s (docs/intellivue.md §5).
EXTENDED_PERIOD_S: Final = 15.0
EXTENDED_RENEW_S: Final = 5.0
# RelativeTime ticks per second (1/8 ms, guide "RelativeTime")
TICKS_PER_S: Final = 8000
# At most this many codes are named per reason of an unused message; the rest count as
# "<reason> other" (a metric label set stays bounded whatever a monitor sends).
_MAX_CODES: Final = 16


class PollMode(StrEnum):
    """How numerics are requested (``poll`` in the config; docs/intellivue.md §5)."""

    EXTENDED = "extended"  # NOM_ACT_POLL_MDIB_DATA_EXT with a period: what real clients use
    SINGLE = "single"  # NOM_ACT_POLL_MDIB_DATA once a second: the fallback


class MessageDrop(StrEnum):
    """Why a framed message, or a numeric in it, was not used (beside `framing.DropReason`).

    The reasons that name a code are followed by it in the counter's label, as
    ``unsupported_action 0xF13B`` (`unused_reason`).
    """

    MALFORMED = "malformed"  # a valid frame whose message does not parse
    UNEXPECTED = "unexpected"  # a message that makes no sense now (a poll result before polling)
    WRONG_UNIT = "wrong_unit"  # a mapped numeric in a unit other than the expected one
    UNMAPPED_NUMERIC = "unmapped_numeric"  # a numeric Vigil has no parameter for (ST, temp...)
    NO_TIME = "no_time"  # decode only: a result with numerics and no time to stamp them with
    # with a code:
    UNSUPPORTED_ACTION = "unsupported_action"  # an action (result) other than the two polls
    UNKNOWN_OBJECT_CLASS = "unknown_object_class"  # a poll result of another class, no numerics
    UNSUPPORTED_EVENT = "unsupported_event"  # an event report other than the MDS Create Event
    UNSUPPORTED_COMMAND = "unsupported_command"  # a GET, SET... (the command type)
    REMOTE_ERROR = "remote_error"  # ROER (the error value)


def unused_reason(message: object) -> tuple[MessageDrop, int] | None:
    """Why a well-formed message is of no use whatever the session's state, and its code.

    None for the messages the link uses: session messages, the MDS Create Event, poll
    requests and results (a result of another object class is judged by `poll_samples`).
    """
    if isinstance(message, OtherCommand):
        if message.action_type is not None:
            return MessageDrop.UNSUPPORTED_ACTION, message.action_type
        return MessageDrop.UNSUPPORTED_COMMAND, message.command_type
    if isinstance(message, EventReport) and message.event_type != NOM_NOTI_MDS_CREAT:
        return MessageDrop.UNSUPPORTED_EVENT, message.event_type
    if isinstance(message, RemoteError):
        return MessageDrop.REMOTE_ERROR, message.error_value
    return None


def count_unused(stats: DriverStats, reason: MessageDrop, code: int) -> None:
    """Count one unused message as ``"<reason> 0xCODE"``, at most `_MAX_CODES` codes a reason."""
    label = f"{reason} 0x{code:04X}"
    if label not in stats.dropped:
        prefix = f"{reason} 0x"
        if sum(1 for k in stats.dropped if k.startswith(prefix)) >= _MAX_CODES:
            label = f"{reason} other"
    stats.drop(label)


def state_problem(state: int) -> str | None:
    """The reason a MeasurementState makes a value unusable, or None if it is usable."""
    if not state & 0xFF00:
        return None
    for bit, name in STATE_BITS:
        if state & bit:
            return name
    return f"state_{state & 0xFF00:#06x}"


@dataclass
class CuffMemory:
    """The identity of the last NIBP determination passed on; one per device, across links."""

    last: object = None


def _nibp_identity(
    values: Mapping[int, tuple[int, Param, int, int, int]], stamp: bytes | None
) -> object:
    """What tells one cuff determination from the next: its time stamp, else its values."""
    if stamp is not None:
        return ("stamp", stamp)
    return ("values", tuple(sorted((place, v[3], v[4]) for place, v in values.items())))


def poll_samples(
    result: PollResult,
    *,
    t: float,
    device_id: str,
    stats: DriverStats,
    cuff: CuffMemory,
) -> list[Sample]:
    """The samples of one poll result (or linked part), stamped `t`.

    Continuous parameters: one sample per mapped numeric, in the result's order. NIBP: the
    triple, SYS, DIA, MEAN (those present), after them and only if the determination is new
    to `cuff`. Wrong units are counted in `stats`.

    Raises:
        MessageError: a numeric attribute of the wrong size.
    """
    out: list[Sample] = []
    # (place in SYS, DIA, MEAN, param, physio id, state, FLOAT) of the cuff's values
    nibp: list[tuple[int, Param, int, int, int]] = []
    nibp_stamp: bytes | None = None
    seen = 0
    lookup = _LOOKUP
    for context in result.contexts:
        for observation in context.observations:
            for physio_id, state, unit, raw in _numerics_of(observation):
                seen += 1
                entry = lookup.get(physio_id)
                if entry is None:
                    stats.drop(MessageDrop.UNMAPPED_NUMERIC)
                    continue
                param, unit_code, place = entry
                if unit != unit_code:
                    stats.drop(MessageDrop.WRONG_UNIT)
                    continue
                if place < 0:
                    out.append(_sample(t, param, physio_id, state, raw, device_id))
                else:
                    nibp.append((place, param, physio_id, state, raw))
                    nibp_stamp = time_stamp(observation) or nibp_stamp
    if nibp:
        out += _cuff_samples(nibp, nibp_stamp, t=t, device_id=device_id, cuff=cuff)
    if not seen and result.polled_type[1] != NOM_MOC_VMO_METRIC_NU:
        _count_other_class(result, stats)
    return out


# Observation -> its numerics: the parser hands out the same Observation object for the same
# bytes (`messages._SEEN`), so a numeric that did not change is not unpacked again. Bounded.
_NUMERICS: Final[dict[Observation, list[tuple[int, int, int, int]]]] = {}


def _numerics_of(observation: Observation) -> list[tuple[int, int, int, int]]:
    known = _NUMERICS.get(observation)
    if known is None:
        known = nu_values(observation.attributes)
        if len(_NUMERICS) >= _JUDGED_MAX:
            _NUMERICS.clear()
        _NUMERICS[observation] = known
    return known


def _cuff_samples(
    nibp: list[tuple[int, Param, int, int, int]],
    stamp: bytes | None,
    *,
    t: float,
    device_id: str,
    cuff: CuffMemory,
) -> list[Sample]:
    """The cuff's SYS, DIA, MEAN (those present) if the determination is new to `cuff`."""
    latest = {n[0]: n for n in nibp}  # by place; a value sent twice: the last one
    identity = _nibp_identity(latest, stamp)
    if identity == cuff.last:
        return []
    cuff.last = identity
    out = []
    for place in sorted(latest):
        _, param, physio_id, state, raw = latest[place]
        out.append(_sample(t, param, physio_id, state, raw, device_id))
    return out


def _count_other_class(result: PollResult, stats: DriverStats) -> None:
    """Count a poll of waves, alerts, the MDS...: nothing of it is used.

    An empty result, such as the RORS closing a linked series, is an answer and counts as used.
    """
    if any(c.observations for c in result.contexts):
        count_unused(stats, MessageDrop.UNKNOWN_OBJECT_CLASS, result.polled_type[1])


# (physio id, state, raw FLOAT) -> the judged sample's (value, valid, unit, mdc, reason): a monitor
# sends the same few readings over and over, and judging one is most of a decode's time
# (bench/decode.py). Bounded: emptied when full.
_Judged = tuple[float, bool, str | None, int | None, str | None]
_JUDGED: Final[dict[tuple[int, int, int], _Judged]] = {}
_JUDGED_MAX: Final = 4096


def _sample(t: float, param: Param, physio_id: int, state: int, raw: int, device_id: str) -> Sample:
    key = (physio_id, state, raw)  # ints: an enum's hash runs in Python
    known = _JUDGED.get(key)
    if known is not None:
        value, valid, unit, mdc, reason = known
        return Sample(t, param, value, valid, device_id, unit, mdc, reason)
    value, special = decode_float(raw)
    problem = state_problem(state) or special
    sample, _ = judged(t, param, value, device_id, valid=problem is None, reason=problem)
    if len(_JUDGED) >= _JUDGED_MAX:
        _JUDGED.clear()
    _JUDGED[key] = (sample.value, sample.valid, sample.unit, sample.mdc, sample.reason)
    return sample


class _State(Enum):
    ASSOCIATING = "associating"  # request sent, waiting for the response
    ASSOCIATED = "associated"  # response received, waiting for the MDS Create Event
    POLLING = "polling"
    ENDED = "ended"  # answered a release request: the next call raises


@dataclass
class IntelliVueLink:
    """The `drivers.link.LinkProtocol` of IntelliVue Data Export (module docstring).

    Counts ``stats.frames`` for every well-formed message received, and drops by
    `framing.DropReason` or `MessageDrop`. Raises `ProtocolError` when the monitor refuses,
    aborts or releases the association, or stops answering polls. `poll` chooses the extended
    poll (the default) or the single poll.
    """

    device_id: str
    stats: DriverStats
    cuff: CuffMemory = field(default_factory=CuffMemory)
    poll: PollMode = PollMode.EXTENDED

    def __post_init__(self) -> None:
        self._frames = FrameDecoder(self.stats)
        self._state = _State.ASSOCIATING
        self._mode = self.poll
        self._since = 0.0  # when the current state began (daemon seconds)
        self._answered = 0.0  # the last poll result
        self._heard = 0.0  # the last well-formed message
        self._renewed = -math.inf  # the last extended poll sent
        self._extended_invoke_id = -1
        self._invoke_id = 0
        self._ended = ""

    def _messages(self, data: bytes) -> list[bytes]:
        """The messages in received bytes: MIB/RS232 frames (the LAN link: one datagram)."""
        return self._frames.feed(data)

    def _wrap(self, message: bytes) -> bytes:
        """A message as sent: in a MIB/RS232 frame (the LAN link: as it is, one datagram)."""
        return encode_frame(message)

    @property
    def polling(self) -> bool:
        """Whether the association is up and numerics are polled."""
        return self._state is _State.POLLING

    @property
    def mode(self) -> PollMode:
        """How numerics are polled now (the single poll after the monitor refused the other)."""
        return self._mode

    def start(self, now: float) -> bytes:
        """The association request."""
        self._state = _State.ASSOCIATING
        self._since = now
        return self._wrap(association_request())

    def receive(self, data: bytes, now: float) -> Received:
        """The samples of the poll results in `data`, and the replies it calls for."""
        self._raise_if_ended()
        samples: list[Sample] = []
        replies: list[bytes] = []
        for user_data in self._messages(data):
            try:
                message = parse_message(user_data)
                if type(message) is PollResult and self._state is _State.POLLING:
                    samples += poll_samples(
                        message, t=now, device_id=self.device_id, stats=self.stats, cuff=self.cuff
                    )
                    # the common case, handled here (`_handle` has the rest)
                    self.stats.frames += 1
                    self._heard = self._answered = now
                    continue
            except MessageError:
                self.stats.drop(MessageDrop.MALFORMED)
                continue
            self.stats.frames += 1
            self._heard = now
            replies += self._handle(message, now)
            if self._state is _State.ENDED:
                break  # nothing after a release matters
        return Received(tuple(samples), b"".join(replies))

    def _handle(self, message: object, now: float) -> list[bytes]:
        if isinstance(message, SessionMessage):
            return self._session(message, now)
        if isinstance(message, EventReport) and message.event_type == NOM_NOTI_MDS_CREAT:
            if self._state is not _State.POLLING:
                # also while associating: a monitor whose association response this link could
                # not read has evidently accepted, since it reports its MDS (docs/intellivue.md §3)
                self._state = _State.POLLING
                self._since = self._answered = now
                self._renewed = -math.inf
            # confirmed every time the monitor asks (VSCaptureMP answers every one); a monitor
            # repeats an unconfirmed event, then aborts
            return [self._wrap(event_report_result(message))] if message.confirmed else []
        if isinstance(message, PollResult):
            if self.polling:
                self._answered = now
            else:
                self.stats.drop(MessageDrop.UNEXPECTED)
            return []
        if isinstance(message, RemoteError) and message.invoke_id == self._extended_invoke_id:
            # the monitor has no extended poll (an ROER to it): the single poll from now on
            self._mode = PollMode.SINGLE
        if isinstance(message, (PollRequest, EventReportResult)):
            self.stats.drop(MessageDrop.UNEXPECTED)  # a monitor's request or confirmation
            return []
        unused = unused_reason(message)
        if unused is not None:
            count_unused(self.stats, *unused)
        # a poll answered by ROER only stays unanswered, and ends the session after POLL_LOST_S
        return []

    def _session(self, message: SessionMessage, now: float) -> list[bytes]:
        kind = message.kind
        if kind is Session.ACCEPT:
            if self._state is _State.ASSOCIATING:
                self._state = _State.ASSOCIATED
                self._since = now
            return []
        if kind is Session.FINISH:
            self._state = _State.ENDED
            self._ended = "the monitor released the association"
            return [self._wrap(RELEASE_RESPONSE)]
        if kind is Session.REFUSE:
            raise ProtocolError("the monitor refused the association")
        if kind is Session.ABORT:
            raise ProtocolError("the monitor aborted the association")
        if kind is Session.DISCONNECT:
            raise ProtocolError("the monitor ended the association (release response)")
        self.stats.drop(MessageDrop.UNEXPECTED)  # an association request, sent to a client
        return []

    def timer(self, now: float) -> bytes:
        """The next poll; the association request again if unanswered for 5 s.

        Raises:
            ProtocolError: polls unanswered for 10 s or no MDS Create Event within 10 s of the
                response while the monitor talks, or the monitor released the association
                (answered already).
        """
        self._raise_if_ended()
        if self._state is _State.ASSOCIATING:
            if now - self._since >= ASSOCIATION_RETRY_S:
                return self.start(now)
            return b""
        if self._state is _State.ASSOCIATED:
            if self._talking(now) and now - self._since >= POLL_LOST_S:
                raise ProtocolError(f"no MDS Create Event within {POLL_LOST_S:g} s")
            return b""
        if self._talking(now) and now - self._answered >= POLL_LOST_S:
            raise ProtocolError(f"association lost: no poll result for {POLL_LOST_S:g} s")
        if self._mode is PollMode.EXTENDED:
            if now - self._renewed < EXTENDED_RENEW_S:
                return b""
            self._renewed = now
            self._invoke_id = self._extended_invoke_id = (self._invoke_id + 1) & 0xFFFF
            period = round(EXTENDED_PERIOD_S * TICKS_PER_S)
            return self._wrap(
                extended_poll_request(self._invoke_id, self._invoke_id, period=period)
            )
        self._invoke_id = (self._invoke_id + 1) & 0xFFFF
        return self._wrap(poll_request(self._invoke_id, self._invoke_id))

    def _talking(self, now: float) -> bool:
        """Whether the monitor sent anything within POLL_LOST_S (silence is the driver's)."""
        return now - self._heard < POLL_LOST_S

    def _raise_if_ended(self) -> None:
        if self._state is _State.ENDED:
            raise ProtocolError(self._ended)


@dataclass
class _Clock:
    """A capture's clock: a result's abs_time_stamp, else its rel_time_stamp from a known pair.

    The pair: the MDS Create Event's NOM_ATTR_TIME_ABS and NOM_ATTR_TIME_REL, or any result
    with both. Extended results may carry no abs_time_stamp (all FF), so real captures
    of extended polls are stamped this way (docs/intellivue.md §8).
    """

    anchor: tuple[float, int] | None = None  # (epoch seconds, RelativeTime ticks)

    def learn(self, abs_time: bytes | None, rel_time: int | None) -> float | None:
        when = None if abs_time is None else from_bcd_time(abs_time)
        if when is None:
            return None
        t = when.astimezone().timestamp()
        if rel_time is not None:
            self.anchor = (t, rel_time)
        return t

    def of(self, result: PollResult) -> float | None:
        t = self.learn(result.abs_time, result.rel_time)
        if t is not None or self.anchor is None:
            return t
        base, ticks = self.anchor
        return base + ((result.rel_time - ticks) & 0xFFFFFFFF) / TICKS_PER_S


def decode_capture(data: bytes, *, device_id: str) -> tuple[list[Sample], DriverStats]:
    """The samples of a raw capture (the bytes a monitor sent), and what was dropped.

    Without a live clock, each poll result's samples take its abs_time_stamp (the monitor's
    local wall time, no zone), read in the host's local time zone (set ``TZ`` for another), or
    its rel_time_stamp from the MDS's times (`_Clock`). A result with numerics and no time
    gives no samples and counts as ``no_time``; every unused message counts by its reason.
    """
    stats = DriverStats()
    samples = decode_messages(FrameDecoder(stats).feed(data), stats=stats, device_id=device_id)
    stats.samples = len(samples)
    return samples, stats


def decode_messages(
    messages: Iterable[bytes], *, stats: DriverStats, device_id: str
) -> list[Sample]:
    """The samples of a monitor's messages (user data), without a live clock (`decode_capture`).

    Every message is counted in `stats`: a frame, and by its reason if it is not used.
    """
    cuff = CuffMemory()
    clock = _Clock()
    samples: list[Sample] = []
    for user_data in messages:
        try:
            message = parse_message(user_data)
            if isinstance(message, PollResult):
                t = clock.of(message)
                if t is not None:
                    samples += poll_samples(
                        message, t=t, device_id=device_id, stats=stats, cuff=cuff
                    )
                elif any(numerics(o) for o in message.observations):
                    stats.drop(MessageDrop.NO_TIME)
            elif isinstance(message, EventReport) and message.event_type == NOM_NOTI_MDS_CREAT:
                clock.learn(*mds_times(message))
            else:
                unused = unused_reason(message)
                if unused is not None:
                    count_unused(stats, *unused)
        except MessageError:
            stats.drop(MessageDrop.MALFORMED)
            continue
        stats.frames += 1
    return samples
