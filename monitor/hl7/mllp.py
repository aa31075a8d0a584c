"""MLLP, the Minimal Lower Layer Protocol that carries HL7 v2 over TCP.

A message is framed as `<VT> message <FS><CR>` (0x0B … 0x1C 0x0D; HL7 v2.5.1 Appendix C).
`frame` wraps one message, `MllpDecoder` is a sans-I/O decoder that yields the messages in a
stream of bytes, and `read_message` reads the next one from an asyncio stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

__all__ = ["END", "START", "MllpDecoder", "MllpError", "frame", "read_message"]

START = b"\x0b"
END = b"\x1c\x0d"
# a receiver that streams bytes without ever closing a frame must not fill our memory
MAX_MESSAGE = 1 << 20


class MllpError(ConnectionError):
    """The peer broke the framing (bytes outside a frame, a frame too long, a closed stream)."""


def frame(message: str | bytes) -> bytes:
    """`message` (text is encoded as UTF-8, MSH-18) in one MLLP frame."""
    body = message.encode() if isinstance(message, str) else message
    return START + body + END


class MllpDecoder:
    """Feed bytes, get whole messages; garbage between frames is skipped and counted."""

    def __init__(self, *, max_message: int = MAX_MESSAGE) -> None:
        self._buffer = bytearray()
        self._max = max_message
        self.skipped = 0
        # whole messages not handed out yet (`read_message` returns one at a time)
        self.pending: list[bytes] = []

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The messages completed by `data`.

        Raises:
            MllpError: a frame longer than the limit.
        """
        self._buffer += data
        while True:
            start = self._buffer.find(START)
            if start < 0:
                self.skipped += len(self._buffer)
                self._buffer.clear()
                return
            if start:
                self.skipped += start
                del self._buffer[:start]
            end = self._buffer.find(END)
            if end < 0:
                if len(self._buffer) > self._max:
                    raise MllpError(f"MLLP frame longer than {self._max} bytes")
                return
            body = bytes(self._buffer[1:end])
            del self._buffer[: end + len(END)]
            yield body


async def read_message(reader: asyncio.StreamReader, decoder: MllpDecoder) -> bytes:
    """The next message on `reader`; the caller bounds the wait.

    Raises:
        MllpError: the stream closed before a whole message came.
    """
    while not decoder.pending:
        data = await reader.read(65536)
        if not data:
            raise MllpError("the peer closed the connection")
        # two messages in one read (a late ACK and the awaited one): hand them out in turn
        decoder.pending.extend(decoder.feed(data))
    return decoder.pending.pop(0)
