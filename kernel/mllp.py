"""MLLP, the Minimal Lower Layer Protocol that carries HL7 v2 over TCP: the sans-I/O framer.

A message is framed as `<VT> message <FS><CR>` (0x0B … 0x1C 0x0D; HL7 v2.5.1 Appendix C).
`frame` wraps one message; `MllpDecoder` yields the messages in a stream of bytes. Used by the
outbound HL7 gateway (`monitor/hl7`) and by the drivers of monitors that speak HL7
(`drivers/mindray_hl7`), so both read the framing the same way. No I/O here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

__all__ = ["END", "MAX_MESSAGE", "START", "MllpDecoder", "MllpError", "frame"]

START: Final = b"\x0b"
END: Final = b"\x1c\x0d"
# a peer that streams bytes without ever closing a frame must not fill our memory
MAX_MESSAGE: Final = 1 << 20


class MllpError(ConnectionError):
    """The peer broke the framing (bytes outside a frame, a frame too long, a closed stream)."""


def frame(message: str | bytes) -> bytes:
    """`message` (text is encoded as UTF-8, MSH-18) in one MLLP frame."""
    body = message.encode() if isinstance(message, str) else message
    return START + body + END


class MllpDecoder:
    """Feed bytes, get whole messages; what is not a whole frame is skipped and counted.

    Counters: ``skipped`` bytes outside frames and ``garbage`` runs of them; ``truncated``
    frames cut short (a new frame began before the end of the previous one: HL7 text never
    holds a VT); ``too_long`` frames dropped for passing `max_message` (with ``resync``;
    without, that raises `MllpError`, for a peer whose answer we are waiting for).
    """

    def __init__(self, *, max_message: int = MAX_MESSAGE, resync: bool = False) -> None:
        self._buffer = bytearray()
        self._max = max_message
        self._resync = resync
        self._dropping = False  # inside a frame dropped as too long
        self._in_garbage = False  # a run of skipped bytes is counted once
        self.skipped = 0
        self.garbage = 0
        self.truncated = 0
        self.too_long = 0
        # whole messages not handed out yet (`monitor.hl7.mllp.read_message` takes one a time)
        self.pending: list[bytes] = []

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The messages completed by `data`.

        Raises:
            MllpError: a frame longer than the limit, unless the decoder resyncs.
        """
        buf = self._buffer
        buf += data
        while True:
            start = buf.find(START)
            if start < 0:
                self._skip(len(buf))
                buf.clear()
                return
            if start:
                self._skip(start)
                del buf[:start]
            self._dropping = False
            end = buf.find(END)
            following = buf.find(START, 1, end if end >= 0 else len(buf))
            if following > 0:
                # a VT inside a frame: the frame before it was cut short, or (not an HL7
                # message, which always begins with MSH) the VT was a byte of line noise
                if buf[1:4] == b"MSH":
                    self.truncated += 1
                    self._in_garbage = False
                else:
                    self._skip(following)
                del buf[:following]
                continue
            if end < 0:
                if len(buf) > self._max:
                    if not self._resync:
                        raise MllpError(f"MLLP frame longer than {self._max} bytes")
                    self.too_long += 1
                    self._dropping = True
                    buf.clear()
                return
            body = bytes(buf[1:end])
            del buf[: end + len(END)]
            self._in_garbage = False
            yield body

    def _skip(self, n: int) -> None:
        if n and not self._dropping:
            self.skipped += n
            if not self._in_garbage:
                self.garbage += 1
            self._in_garbage = True
