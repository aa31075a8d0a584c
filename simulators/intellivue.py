"""The device half of IntelliVue Data Export: an MP monitor answering associations and polls.

Reuses `drivers.intellivue.framing` and `drivers.intellivue.messages`, so the simulator and the
driver agree by construction on the layouts; the codec's tests check those layouts against
messages written by hand from the guide (docs/intellivue.md), not against this simulator.

Behaviour (docs/intellivue.md §9, reduced to what a numerics client needs):

- an association request (any ``0D`` message) is answered with an association response and the
  MDS Create Event Report (invoke id 1, as VSCaptureMP expects), whatever the state before;
- once the client has confirmed the event (its Event Report Result), each single poll of
  numerics is answered with the latest values: HR, SpO2, pleth pulse rate and the last NBP
  determination with its time stamp (NOM_ATTR_TIME_STAMP_ABS = the determination's time), as
  one RORS, or linked results when the result does not fit `mtu`; a poll of another object
  type gets an empty result, another action an ROER; requests before the confirmation are
  ignored (the client repeats them);
- an extended poll of numerics with a period (NOM_ATTR_TIME_PD_POLL) starts, or replaces, a
  periodic delivery: a result at once and then one every scenario second until the period
  ends, all parts of one linked series (ROLRS), closed by an empty RORS (docs/intellivue.md
  §6.4); each result carries an abs_time_stamp of all FF, as the guide lets an extended result,
  so stamps come from the rel_time_stamp; an extended poll without a period is answered once,
  as a single poll is; `extended=False` makes the monitor answer every extended poll with an
  ROER (an older monitor: the driver falls back to the single poll);
- a release request is answered with a release response, an abort is taken silently; either
  ends the association;
- the association timeout of the guide: when nothing came from the client for `timeout_s` of
  scenario time, the monitor sends an Abort at the next scenario second and drops the
  association.

Values are sent with MeasurementState `state` (0: valid). A real monitor in demo mode sets
DEMO_DATA (0x0400), which Vigil reports as invalid "demo_data"; the default keeps the scenario's
samples valid, as the contract tests expect.
"""

from __future__ import annotations

import datetime as dt
import functools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from drivers.base import DriverStats
from drivers.intellivue.codec import NOM_DIM_BEAT_PER_MIN, NOM_DIM_MMHG, NOM_DIM_PERCENT
from drivers.intellivue.framing import BOF, EOF, ESC, FrameDecoder, encode_frame
from drivers.intellivue.messages import (
    ABORT,
    NUMERICS,
    RELEASE_RESPONSE,
    ContextPoll,
    EventReportResult,
    MessageError,
    NuObservation,
    Observation,
    OtherCommand,
    PollRequest,
    PollResult,
    RoType,
    Session,
    SessionMessage,
    UserInfo,
    association_response,
    bcd_time,
    encode_float,
    mds_create_event,
    parse_message,
    periodic_end,
    periodic_results,
    poll_results,
    remote_error,
)
from kernel.vocabulary import Param, Sample
from simulators.serial_monitor import Frame

__all__ = ["IntelliVueLanSide", "IntelliVueSide"]


# What the monitor grants (docs/intellivue.md §2.2 constructed AARE): a server, warm start, min poll
# period 0.5 s, MTU 1000 (the RS232 maximum), NU_1SEC | RTSA; no object support profile.
_GRANTED: Final = UserInfo(
    system_type=0x00800000,  # SYST_SERVER
    startup_mode=0x40000000,  # WARM_START
    max_mtu_rx=1000,
    max_mtu_tx=1000,
    poll_ext_options=0x88000000,
    object_support=(),
)
_MDS_EVENT_INVOKE_ID: Final = 1
# AbsoluteTime not given (guide: all octets FF)
_NO_TIME: Final = b"\xff" * 8
# RelativeTime ticks per second (1/8 ms)
_TICKS: Final = 8000

# (handle, physio id, unit) of the continuous numerics, and of the NBP compound's parts
_CONTINUOUS: Final = (
    (0x0010, Param.HR, 0x4182, NOM_DIM_BEAT_PER_MIN),
    (0x0011, Param.SPO2, 0x4BB8, NOM_DIM_PERCENT),
    (0x0012, Param.PR, 0x4822, NOM_DIM_BEAT_PER_MIN),
)
_NBP_HANDLE: Final = 0x0013
_NBP: Final = (
    (Param.NIBP_SYS, 0x4A05),
    (Param.NIBP_DIA, 0x4A06),
    (Param.NIBP_MEAN, 0x4A07),
)


@dataclass
class IntelliVueSide:
    """An IntelliVue MP monitor's MIB/RS232 port (module docstring).

    `mtu`: most command bytes in one result before it is split into linked results (the guide
    allows 1000 on RS232); `state`: the MeasurementState sent with every value; `timeout_s`:
    the association timeout (10 s for the 0.5 s minimum poll period clients ask for);
    `extended`: whether the monitor offers the extended poll.
    """

    mtu: int = 1000
    state: int = 0
    timeout_s: float = 10.0
    extended: bool = True
    # MIB/RS232 frames (serial); False on the LAN: one message a datagram, as it is
    framed: bool = True
    stats: DriverStats = field(default_factory=DriverStats)

    def __post_init__(self) -> None:
        self._frames = FrameDecoder(self.stats)
        self._values: dict[Param, float] = {}
        self._cuff: tuple[float, dict[Param, float]] | None = None
        self._associated = False
        self._confirmed = False
        self._since = 0.0  # association start (RelativeTime origin)
        self._heard = 0.0  # the last message from the client
        # parameters whose latest value no poll result has carried yet (`Frame.samples`)
        self._fresh: set[Param] = set()
        self._carried = 0  # fresh values in the answer being built
        # the periodic extended poll running: its request, its end (scenario s), the series'
        # counter, and when it last delivered
        self._periodic: tuple[PollRequest, float] | None = None
        self._count = 0
        self._delivered = -1.0

    @property
    def associated(self) -> bool:
        """Whether a client holds the association."""
        return self._associated

    def receive(self, data: bytes, now: float) -> list[bytes]:
        """Answer what the client sent (module docstring); damaged frames are ignored."""
        out: list[bytes] = []
        for user_data in self._frames.feed(data) if self.framed else [data]:
            try:
                message = parse_message(user_data)
            except MessageError:
                continue
            self._heard = now
            out += self._frames_of(functools.partial(self._answer, message, now))
        return out

    def _wrap(self, message: bytes) -> bytes:
        return encode_frame(message) if self.framed else message

    def _frames_of(self, build: Callable[[], list[bytes]]) -> list[bytes]:
        """The messages `build` makes, framed; the last one marked with the fresh values."""
        self._carried = 0
        frames: list[bytes] = [self._wrap(m) for m in build()]
        if frames and self._carried:
            # a linked result is whole with its last part: that one carries the values
            frames[-1] = Frame(frames[-1], self._carried)
        return frames

    def _answer(self, message: object, now: float) -> list[bytes]:
        if isinstance(message, SessionMessage):
            return self._session(message, now)
        if isinstance(message, EventReportResult) and self._associated:
            self._confirmed = True
        elif not (self._associated and self._confirmed):
            pass  # not associated, or the create event not yet confirmed: ignored
        elif isinstance(message, PollRequest):
            return self._poll(message, now)
        elif isinstance(message, OtherCommand) and message.ro_type is RoType.ROIV:
            return [remote_error(message.invoke_id)]
        return []

    def _session(self, message: SessionMessage, now: float) -> list[bytes]:
        self._periodic = None  # any association message ends a periodic poll
        if message.kind is Session.CONNECT:
            self._associated = True
            self._confirmed = False
            self._since = now
            event = mds_create_event(
                invoke_id=_MDS_EVENT_INVOKE_ID,
                event_time=0,
                abs_time=bcd_time(self._wall(now)),
                rel_time=0,
            )
            return [association_response(_GRANTED), event]
        if message.kind is Session.FINISH:
            self._associated = False
            return [RELEASE_RESPONSE]
        if message.kind is Session.ABORT:
            self._associated = False
        return []

    def _poll(self, request: PollRequest, now: float) -> list[bytes]:
        if request.extended and not self.extended:
            return [remote_error(request.invoke_id)]
        if request.extended and request.period is not None and request.polled_type == NUMERICS:
            running = self._periodic is not None
            self._periodic = (request, now + request.period / _TICKS)
            self._count = 0  # a new request, a new series
            # a renewal replaces the running poll, whose delivery of this second comes with the
            # second's values (`second`); a new one answers at once, as a single poll would
            return [] if running else self._deliver(now)
        return poll_results(self._result(request, now), mtu=self.mtu)

    def _result(self, request: PollRequest, now: float) -> PollResult:
        observations: list[Observation] = []
        if request.polled_type == NUMERICS:
            observations = self._numerics()
        return PollResult(
            invoke_id=request.invoke_id,
            poll_number=request.poll_number,
            rel_time=round((now - self._since) * _TICKS) & 0xFFFFFFFF,
            # an extended result's abs_time_stamp: all FF (stamps come from rel_time_stamp)
            abs_time=_NO_TIME if request.extended else bcd_time(self._wall(now)),
            polled_type=request.polled_type,
            attr_group=request.attr_group,
            contexts=(ContextPoll(0, tuple(observations)),),
            extended=request.extended,
            sequence_no=self._count,
        )

    def _deliver(self, now: float) -> list[bytes]:
        """This second's result of the periodic poll, or its end; nothing if delivered."""
        if self._periodic is None or now <= self._delivered:
            return []
        request, until = self._periodic
        self._delivered = now
        if now >= until:
            self._periodic = None
            return [periodic_end(self._result(request, now))]
        messages, self._count = periodic_results(
            self._result(request, now), mtu=self.mtu, count=self._count
        )
        return messages

    def _numerics(self) -> list[Observation]:
        out = []
        carried = self._fresh & ({p for _, p, _, _ in _CONTINUOUS} | ({p for p, _ in _NBP}))
        self._carried += len(carried)
        self._fresh -= carried
        for handle, param, physio_id, unit in _CONTINUOUS:
            if param in self._values:
                value = NuObservation(
                    physio_id, self.state, unit, encode_float(self._values[param])
                )
                out.append(Observation.numeric(handle, [value]))
        if self._cuff is not None:
            t, values = self._cuff
            parts = [
                NuObservation(physio_id, self.state, NOM_DIM_MMHG, encode_float(values[p]))
                for p, physio_id in _NBP
                if p in values
            ]
            out.append(Observation.numeric(_NBP_HANDLE, parts, stamp=bcd_time(self._wall(t))))
        return out

    @staticmethod
    def _wall(t: float) -> dt.datetime:
        # the monitor's clock: local wall time, sent without a zone
        return dt.datetime.fromtimestamp(t)  # noqa: DTZ006

    def second(self, samples: Sequence[Sample], now: float) -> list[bytes]:
        """Take this second's values; send nothing unless the association timed out (Abort)."""
        cuff: dict[Param, float] = {}
        for sample in samples:
            if sample.param in {p for p, _ in _NBP}:
                cuff[sample.param] = sample.value
            else:
                self._values[sample.param] = sample.value
            self._fresh.add(sample.param)
        if cuff:
            self._cuff = (now, cuff)
        if self._associated and now - self._heard >= self.timeout_s:
            self._associated = False
            self._periodic = None
            return [self._wrap(ABORT)]
        return self._frames_of(functools.partial(self._deliver, now))

    def idle(self, now: float) -> list[bytes]:
        """A second before the scenario begins: the monitor's own clock runs all the same."""
        return self.second([], now)

    def corrupt(self, frame: bytes, rng: random.Random) -> bytes:
        """One bit flipped in a byte between BOF and EOF, which the FCS catches.

        The byte is neither a special byte nor the second of an escape pair, and does not
        become a special byte, so the framing stays whole and only the FCS can tell.
        """
        plain = [
            i
            for i in range(1, len(frame) - 1)
            if frame[i] not in {BOF, EOF, ESC} and frame[i - 1] != ESC
        ]
        i = rng.choice(plain)
        flips = [b for b in range(8) if frame[i] ^ (1 << b) not in {BOF, EOF, ESC}]
        damaged = frame[i] ^ (1 << rng.choice(flips))
        return frame[:i] + bytes((damaged,)) + frame[i + 1 :]


@dataclass
class IntelliVueLanSide(IntelliVueSide):
    """The monitor on the LAN: one message a datagram, no MIB/RS232 framing."""

    framed: bool = False

    def corrupt(self, frame: bytes, rng: random.Random) -> bytes:  # noqa: ARG002 - no choice
        """A datagram damaged where the parser must see it: a length field's bit flipped.

        A bit flipped anywhere on the LAN is dropped by UDP's checksum before any application
        sees it; what gets through damaged is what a sender got wrong, a length that does not
        add up (the ROapdus length of a command, the LI of a session message).
        """
        i = 7 if frame[:2] == b"\xe1\x00" and len(frame) > 8 else 1
        if len(frame) <= i:
            return frame[:-1]
        return frame[:i] + bytes((frame[i] ^ 0x01,)) + frame[i + 1 :]
