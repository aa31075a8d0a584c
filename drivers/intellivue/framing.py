"""Sans-I/O MIB/RS232 framing of IntelliVue Data Export (docs/devices.md §2.4).

One frame carries one Data Export or association message (the *user data*)::

    C0 | 11 01 | LL LL | user data | FCS lo FCS hi | C1
    BOF  header  length               CRC-16         EOF

The header is protocol id 0x11 (Data Export) and message type 0x01; the length is big-endian
and counts the user data only. The FCS is the PPP FCS-16 (RFC 1662, the catalogued
CRC-16/X-25) over header and user data, sent low byte first. Between BOF and EOF, header,
user data and FCS alike, every ``C0``, ``C1`` and ``7D`` is sent as ``7D`` and the byte XOR
0x20; length and FCS are computed on the bytes before that escaping (Philips Data Export
Interface Programming Guide, "MIB/RS232 transport"; docs/intellivue.md §1, from VSCaptureMP
``Class3.cs``, PERSEUS ``RS232.py`` and OpenICE ``RS232Adapter.java``, which agree).

`FrameDecoder` never raises: whatever it cannot use it drops and counts by `DropReason`, and it
resynchronises at the next ``C0``. Valid frames are not counted here: the link counts messages.

Tolerance: VSCaptureMP escapes only the user data, not header or FCS (docs/intellivue.md §1.3).
A frame that fails as sent is retried read that way when its header or FCS holds a ``7D``, and
a ``C1`` right after ``11 01 hh`` is taken as the length's low byte (a frame cannot end there).
An unescaped ``C0`` is always a new frame, and an unescaped ``C1`` in an FCS ends the frame early:
such a frame from that peer (about 1 in 64 of its messages) is lost, and counted.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from drivers import transparency
from drivers.base import DriverStats

__all__ = [
    "BOF",
    "EOF",
    "ESC",
    "HEADER",
    "MAX_USER_DATA",
    "DropReason",
    "FrameDecoder",
    "encode_frame",
    "escape",
    "fcs16",
]

BOF: Final = 0xC0
EOF: Final = 0xC1
ESC: Final = 0x7D
# protocol id 0x11 (Data Export), message type 0x01; the length follows
HEADER: Final = b"\x11\x01"
_SPECIAL: Final = frozenset({BOF, EOF, ESC})

# The guide caps a message on MIB/RS232 at 1000 bytes of command (the largest MTU it
# negotiates, docs/intellivue.md §1.3). The association request VSCaptureMP sends (and this driver)
# offers 1456, so a monitor that honoured that is still read; headers come on top.
MAX_USER_DATA: Final = 1500
# Escaping at most doubles a frame: header, user data and FCS.
_MAX_RAW: Final = 2 * (len(HEADER) + 2 + MAX_USER_DATA + 2)

_DELIMITER = re.compile(rb"[\xc0\xc1]")
_GOOD_FCS: Final = 0xF0B8 ^ 0xFFFF
_BOF_BYTE: Final = bytes((BOF,))
_EOF_BYTE: Final = bytes((EOF,))


class DropReason(StrEnum):
    """Why bytes were dropped by the framing (the `reason` label of the drop counter)."""

    BAD_FCS = "bad_fcs"  # the FCS does not match: damaged on the line
    BAD_ESCAPE = "bad_escape"  # 7D followed by a byte that is not an escaped C0, C1 or 7D
    BAD_HEADER = "bad_header"  # not 11 01, or shorter than header and FCS
    LENGTH_MISMATCH = "length_mismatch"  # the length field disagrees with the user data
    TOO_LONG = "too_long"  # no EOF within the longest frame allowed
    TRUNCATED = "truncated"  # a frame header, then a new BOF before the EOF: cut short
    # bytes outside any frame, or after a BOF that no frame header follows before the next BOF
    # (a stray C0 in line noise); counted once per run of them
    NOISE = "noise"


def _reflect8(byte: int) -> int:
    return int(f"{byte:08b}"[::-1], 2)


# Each byte with its bits in reverse order: the table of bytes.translate.
_REVERSED: Final = bytes(_reflect8(b) for b in range(256))


def fcs16(data: bytes) -> int:
    """The PPP FCS-16 of `data` as sent: ones' complement of the register started at 0xFFFF.

    ``fcs16(b"123456789") == 0x906E`` (the CRC-16/X-25 check value).

    CRC-16/X-25 is the reflected form of the CRC-CCITT that `binascii.crc_hqx` computes (same
    polynomial 0x1021, same start 0xFFFF): computed on the bytes with their bits reversed, its
    register reversed is X-25's before the complement. Both steps run in C (the per-byte table
    loop of RFC 1662 appendix C.2 is the slowest part of a decode in Python).
    """
    crc = binascii.crc_hqx(data.translate(_REVERSED), 0xFFFF)
    return (_REVERSED[crc & 0xFF] << 8 | _REVERSED[crc >> 8]) ^ 0xFFFF


def escape(data: bytes) -> bytes:
    """`data` with every C0, C1 and 7D sent as 7D and the byte XOR 0x20."""
    return transparency.escape(data, _SPECIAL)


def encode_frame(user_data: bytes) -> bytes:
    """One MIB/RS232 frame carrying `user_data` (one message), escaped, BOF to EOF.

    Raises:
        ValueError: `user_data` is longer than `MAX_USER_DATA`.
    """
    if len(user_data) > MAX_USER_DATA:
        raise ValueError(f"{len(user_data)} bytes of user data: over {MAX_USER_DATA}")
    body = HEADER + len(user_data).to_bytes(2, "big") + user_data
    fcs = fcs16(body)
    return bytes((BOF,)) + escape(body + fcs.to_bytes(2, "little")) + bytes((EOF,))


def _unescape(raw: bytes) -> bytes | DropReason:
    out = transparency.unescape(raw, _SPECIAL)
    return DropReason.BAD_ESCAPE if out is None else out


def _check(frame: bytes) -> bytes | DropReason:
    """The user data of an unescaped frame (BOF and EOF stripped), or why it is unusable."""
    n = len(frame)
    if n < len(HEADER) + 4:
        return DropReason.BAD_HEADER
    # the FCS of header, user data and FCS together is the "good FCS" residue when they agree
    # (RFC 1662 §C.2: 0xF0B8, complemented as `fcs16` returns it); no slice to compare
    if fcs16(frame) != _GOOD_FCS:
        return DropReason.BAD_FCS
    if not frame.startswith(HEADER):
        return DropReason.BAD_HEADER
    length = frame[2] << 8 | frame[3]
    if length != n - 6:
        return DropReason.LENGTH_MISMATCH
    if length > MAX_USER_DATA:
        return DropReason.TOO_LONG
    return frame[4:-2]


def _unframe(raw: bytes) -> bytes | DropReason:
    """The user data of the bytes between BOF and EOF, as sent (escaped)."""
    plain = _unescape(raw)
    result = plain if isinstance(plain, DropReason) else _check(plain)
    if isinstance(result, bytes):
        return result
    if len(raw) >= 6 and (ESC in raw[:4] or ESC in raw[-2:]):
        # a peer that escapes the user data only (VSCaptureMP): header and FCS as they are
        middle = _unescape(raw[4:-2])
        if isinstance(middle, bytes):
            again = _check(raw[:4] + middle + raw[-2:])
            if isinstance(again, bytes):
                return again
    return result


@dataclass
class FrameDecoder:
    """Splits a byte stream into frames and returns their user data; resyncs, counts drops.

    `feed` takes any chunk (a frame may arrive in pieces, several in one) and returns the user
    data of every valid frame it completed, in order. It never raises: every unusable frame
    and every run of bytes outside a frame counts once in ``stats.dropped`` by `DropReason`.
    """

    stats: DriverStats = field(default_factory=DriverStats)
    _raw: bytearray = field(default_factory=bytearray)
    _in_frame: bool = False
    # inside a run of bytes outside any frame that has been counted already
    _in_noise: bool = False
    # the current frame's BOF came straight after noise already counted
    _after_noise: bool = False

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the user data of the valid frames they completed."""
        out: list[bytes] = []
        i = 0
        n = len(data)
        while i < n:
            if not self._in_frame and data[i] == BOF:
                # the common case, a whole frame at i: found with two searches in C
                end = data.find(_EOF_BYTE, i + 1)
                if (
                    end > i + 4  # not the C1 that is a length's low byte (`_inside`)
                    and end - i <= _MAX_RAW
                    and data.find(_BOF_BYTE, i + 1, end) < 0
                ):
                    self._in_noise = False
                    result = _unframe(data[i + 1 : end])
                    if isinstance(result, DropReason):
                        self.stats.drop(result)
                    else:
                        out.append(result)
                    i = end + 1
                    continue
            i = self._inside(data, i, out) if self._in_frame else self._outside(data, i)
        return out

    def _outside(self, data: bytes, i: int) -> int:
        """Skip to the next BOF (counting what lies before it); where to go on."""
        start = data.find(BOF, i)
        if start != i and not self._in_noise:
            self.stats.drop(DropReason.NOISE)
            self._in_noise = True
        if start < 0:
            return len(data)
        self._in_frame = True
        self._after_noise = self._in_noise
        self._in_noise = False
        self._raw.clear()
        return start + 1

    def _inside(self, data: bytes, i: int, out: list[bytes]) -> int:
        """Collect a frame's bytes up to its EOF (or a BOF that cuts it); where to go on."""
        match = _DELIMITER.search(data, i)
        end = len(data) if match is None else match.start()
        self._raw += data[i:end]
        if len(self._raw) > _MAX_RAW:
            self.stats.drop(DropReason.TOO_LONG)
            self._in_frame = False
            self._in_noise = True  # the rest of it, up to the next BOF, is not news
            return end
        if match is None:
            return end
        if data[end] == BOF:
            raw = bytes(self._raw)
            if raw and HEADER.startswith(raw[: len(HEADER)]):
                self.stats.drop(DropReason.TRUNCATED)
                self._after_noise = False
            elif raw:
                # no frame began at that BOF: a C0 in line noise; one run of noise counts once
                if not self._after_noise:
                    self.stats.drop(DropReason.NOISE)
                self._after_noise = True
            self._raw.clear()
        elif len(self._raw) == 3 and self._raw[:2] == HEADER:
            # C1 as the low byte of an unescaped length: a frame cannot end here
            self._raw.append(EOF)
        else:
            self._in_frame = False
            result = _unframe(bytes(self._raw))
            if isinstance(result, DropReason):
                self.stats.drop(result)
            else:
                out.append(result)
        return end + 1
