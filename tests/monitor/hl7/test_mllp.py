"""MLLP framing: whole messages out of any split of the byte stream."""

from __future__ import annotations

import asyncio

import pytest

from monitor.hl7.mllp import MllpDecoder, MllpError, frame, read_message


def test_frame_wraps_in_vt_and_fs_cr() -> None:
    assert frame("MSH|x") == b"\x0bMSH|x\x1c\r"
    assert frame("é".encode()) == b"\x0b\xc3\xa9\x1c\r"


def test_messages_split_anywhere_come_out_whole_and_garbage_is_skipped() -> None:
    stream = b"junk" + frame("A|1") + frame("B|2") + b"\r\n" + frame("C|3")
    for size in (1, 2, 3, 7, len(stream)):
        decoder = MllpDecoder()
        out: list[bytes] = []
        for i in range(0, len(stream), size):
            out += decoder.feed(stream[i : i + size])
        assert out == [b"A|1", b"B|2", b"C|3"]
        assert decoder.skipped == 6


def test_a_frame_that_never_ends_is_refused() -> None:
    decoder = MllpDecoder(max_message=10)
    with pytest.raises(MllpError, match="longer than 10"):
        list(decoder.feed(b"\x0b" + b"x" * 20))


async def test_read_message_hands_out_two_messages_of_one_read_in_turn() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(frame("A") + frame("B"))
    reader.feed_eof()
    decoder = MllpDecoder()
    assert await read_message(reader, decoder) == b"A"
    assert await read_message(reader, decoder) == b"B"
    with pytest.raises(MllpError, match="closed"):
        await read_message(reader, decoder)
