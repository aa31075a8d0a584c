"""Byte stuffing as HDLC-like serial protocols do it (RFC 1662 §4.2 "transparency").

A frame's special bytes (its flags, and the escape byte itself) are sent as the escape byte
followed by the byte XOR 0x20; a receiver undoes it. Philips IntelliVue MIB/RS232 escapes
C0, C1 and 7D; the GE S/5 computer interface escapes 7E and 7D (clearing bit 5 of a byte that
has it set is the same XOR). Pure functions (docs/DESIGN.md P1).
"""

from __future__ import annotations

from typing import Final

__all__ = ["ESC", "escape", "unescape"]

ESC: Final = 0x7D
_FLIP: Final = 0x20


def escape(data: bytes, specials: frozenset[int]) -> bytes:
    """`data` with every byte of `specials` sent as ESC and the byte XOR 0x20."""
    if not any(b in specials for b in data):
        return data
    out = bytearray()
    for byte in data:
        if byte in specials:
            out += bytes((ESC, byte ^ _FLIP))
        else:
            out.append(byte)
    return bytes(out)


def unescape(raw: bytes, specials: frozenset[int]) -> bytes | None:
    """`raw` with the escapes undone; None when an ESC is last or does not stand for a special."""
    if ESC not in raw:
        return raw
    out = bytearray()
    i = 0
    n = len(raw)
    while i < n:
        byte = raw[i]
        if byte == ESC:
            if i + 1 == n or (raw[i + 1] ^ _FLIP) not in specials:
                return None
            out.append(raw[i + 1] ^ _FLIP)
            i += 2
        else:
            out.append(byte)
            i += 1
    return bytes(out)
