"""Line framing with resynchronisation, pure: for devices that print one time-stamped line each.

Masimo ASCII 1 and the Nellcor ASCII output both send text lines that begin with a time stamp
and end in LF (docs/devices.md §2.1, §2.6). A serial line that drops bytes leaves a line cut
short running into the next one, or noise before a line; the framing here keeps the last whole
line in such a run, counts each piece it drops for what it is, and bounds what it holds, so
garbage can never grow the buffer (docs/DESIGN.md: every drop counted). Sans-I/O: bytes in,
parsed lines out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from drivers.base import DriverStats
from drivers.link import Received, UnaskedLink

if TYPE_CHECKING:
    import datetime as dt
    import re
    from collections.abc import Callable, Iterable

    from kernel.vocabulary import Sample

__all__ = ["LineDrop", "StampedLineLink", "StampedLines"]

R = TypeVar("R")


class LineDrop(StrEnum):
    """The drop reasons of the framing itself (each device's `DropReason` has them too)."""

    TOO_LONG = "too_long"  # no line end within the device's longest line
    TRUNCATED = "truncated"  # the start of a line cut short, followed by a whole line
    # bytes before a line's time stamp that begin no line (line noise, or the tail of a line
    # whose start was missed), on the same line as it
    GARBAGE = "garbage"


@dataclass
class StampedLines(Generic[R]):
    """Splits a byte stream into lines, resyncs each at its last time stamp, and parses it.

    `parse(line)` returns what the line holds, None for a line recognised with nothing to
    report (a heading), or a drop reason (a str) for a line that is not one. Every parsed line
    (None included) counts in ``stats.frames``; every dropped piece in ``stats.dropped``.
    `blank`: the bytes a line may consist of and be skipped silently (None: any whitespace).
    """

    stamp: re.Pattern[bytes]
    parse: Callable[[bytes], R | str | None]
    max_line: int
    stats: DriverStats = field(default_factory=DriverStats)
    blank: bytes | None = None
    _buffer: bytearray = field(default_factory=bytearray)
    _discarding: bool = False

    def feed(self, data: bytes) -> list[R]:
        """Add received bytes (a line may arrive in pieces); return what the lines it ended held."""
        out: list[R] = []
        buf = self._buffer
        buf += data
        while True:
            end = buf.find(b"\n")
            if end < 0:
                if len(buf) > self.max_line:
                    # drop what we have and everything up to the next line end
                    if not self._discarding:
                        self.stats.drop(LineDrop.TOO_LONG)
                    self._discarding = True
                    buf.clear()
                return out
            line = bytes(buf[:end]).rstrip(b"\r")
            del buf[: end + 1]
            if self._discarding:
                self._discarding = False
                continue
            if len(line) > self.max_line:
                self.stats.drop(LineDrop.TOO_LONG)
                continue
            if not line.strip(self.blank):
                continue  # an empty line between lines is not a frame
            result = self._line(line)
            if result is not None:
                out.append(result)

    def _line(self, line: bytes) -> R | None:
        # A line cut short runs into the next one: keep the last whole line in it. Each piece
        # before it is dropped for what it is: bytes that begin no line, a line begun and cut.
        starts = [m.start() for m in self.stamp.finditer(line)]
        if starts and starts[0] > 0:
            self.stats.drop(LineDrop.GARBAGE)
        if len(starts) > 1:
            self.stats.drop(LineDrop.TRUNCATED, len(starts) - 1)
        if starts:
            line = line[starts[-1] :]
        result = self.parse(line)
        if isinstance(result, str):
            self.stats.drop(result)
            return None
        self.stats.frames += 1
        return result


class _Stamped(Protocol):
    @property
    def stamp(self) -> dt.datetime: ...


S = TypeVar("S", bound=_Stamped)


@dataclass
class StampedLineLink(UnaskedLink, Generic[S]):
    """The `drivers.link.LinkProtocol` of a device that prints one time-stamped line a reading.

    Masimo ASCII 1 and the Nellcor output (docs/devices.md §2.1, §2.6): the device talks, the
    host listens. Live samples are stamped with the receive time (`now`): the device's clock is
    set by hand, drifts and has no zone. Each device says how its lines are framed (`lines`) and
    what samples a line gives (`samples`).
    """

    device_id: str
    stats: DriverStats

    def __post_init__(self) -> None:
        self._decoder = self.lines()

    def lines(self) -> StampedLines[S]:
        """A fresh framing of the device's lines, counting into `stats`."""
        raise NotImplementedError

    def samples(self, record: S, *, t: float) -> Iterable[Sample]:
        """The samples of one line, stamped `t` (epoch seconds UTC)."""
        raise NotImplementedError

    def receive(self, data: bytes, now: float) -> Received:
        """The samples of the lines `data` completed, stamped `now`."""
        feed = self._decoder.feed(data)
        return Received(tuple(s for r in feed for s in self.samples(r, t=now)))

    def decode_capture(self, data: bytes) -> tuple[list[Sample], DriverStats]:
        """The samples of a raw capture (the bytes the device sent), and what was dropped.

        Without a live clock, each sample takes its line's own time stamp, read in the host's
        local time zone (the device prints its local wall time without a zone; set ``TZ`` to
        read a capture from another zone).
        """
        samples: list[Sample] = []
        for record in self._decoder.feed(data + b"\n"):
            samples += self.samples(record, t=record.stamp.astimezone().timestamp())
        self.stats.samples = len(samples)
        return samples, self.stats
