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
_ESC_BYTE: Final = bytes((ESC,))
# each byte XOR 0x20, as a one-byte string
_FLIPPED: Final = tuple(bytes((b ^ _FLIP,)) for b in range(256))


def escape(data: bytes, specials: frozenset[int]) -> bytes:
    """`data` with every byte of `specials` sent as ESC and the byte XOR 0x20."""
    # bytes.replace runs in C; the escape byte goes first, since the others bring it in
    for byte in sorted(specials, key=lambda b: b != ESC):
        special = bytes((byte,))
        if special in data:
            data = data.replace(special, bytes((ESC, byte ^ _FLIP)))
    return data


def unescape(raw: bytes, specials: frozenset[int]) -> bytes | None:
    """`raw` with the escapes undone; None when an ESC is last or does not stand for a special."""
    if ESC not in raw:
        return raw
    # split at each ESC (in C): every part after the first begins with an escaped byte; an
    # empty part is an ESC that is last or followed by another ESC, which stands for nothing
    parts = raw.split(_ESC_BYTE)
    out = [parts[0]]
    for part in parts[1:]:
        if not part or (part[0] ^ _FLIP) not in specials:
            return None
        out.append(_FLIPPED[part[0]])
        out.append(part[1:])
    return b"".join(out)
