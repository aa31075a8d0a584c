"""MLLP over an asyncio stream: `read_message`. The framer itself is `kernel.mllp`.

`frame`, `MllpDecoder` and `MllpError` are `kernel.mllp`'s, named here too for the gateway.
"""

from __future__ import annotations

import asyncio

from kernel.mllp import END, START, MllpDecoder, MllpError, frame

__all__ = ["END", "START", "MllpDecoder", "MllpError", "frame", "read_message"]


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
