"""drivers.transparency: HDLC-like byte stuffing (RFC 1662 §4.2)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from drivers.transparency import escape, unescape

MIB = frozenset({0xC0, 0xC1, 0x7D})  # IntelliVue MIB/RS232
DRI = frozenset({0x7E, 0x7D})  # GE S/5


def test_the_documented_examples() -> None:
    # GE [CI] p.3: 7E -> 7D 5E, 7D -> 7D 5D; IntelliVue: C0 -> 7D E0, C1 -> 7D E1
    assert escape(b"\x01\x7e\x7d\x02", DRI) == b"\x01\x7d\x5e\x7d\x5d\x02"
    assert escape(b"\xc0\xc1\x7d", MIB) == b"\x7d\xe0\x7d\xe1\x7d\x5d"
    assert unescape(b"\x7d\x5e", DRI) == b"\x7e"


@given(st.binary(max_size=300), st.sampled_from([MIB, DRI]))
def test_round_trip_and_no_special_byte_left(data: bytes, specials: frozenset[int]) -> None:
    stuffed = escape(data, specials)
    assert unescape(stuffed, specials) == data
    assert not any(b in specials - {0x7D} for b in stuffed)


def test_a_dangling_or_unknown_escape_is_refused() -> None:
    assert unescape(b"\x01\x7d", DRI) is None
    assert unescape(b"\x7d\x00", DRI) is None
    assert unescape(b"\x7d\x5e", MIB) is None  # 7E is not special on the MIB
