"""The first recording reader Vigil had: Python's `csv`, row by row. The tests' oracle.

`alarms.recording_io` (pyarrow, columnar, streamed) is the product's only reader; this plain
one is kept here, in the tests, to check it against: same rows, same errors at the same lines.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator

from alarms.recording_io import HEADER, RecordingError
from alarms.replay import Row
from kernel.vocabulary import Param, SessionEvent

__all__ = ["read_recording"]


def read_recording(lines: Iterable[str], *, file: str = "<recording>") -> Iterator[Row]:
    """Parse a recording, row by row.

    Raises:
        RecordingError: at the first bad line (bad header, unknown parameter or event, time that
            is not a finite number or goes backwards, value that is not a number).
    """
    reader = csv.reader(lines)
    try:
        header = next(reader)
    except StopIteration:
        raise RecordingError(file, 1, "empty file: expected header t,param,value") from None
    if header:
        # Excel and Windows tools start a UTF-8 CSV with a byte-order mark: not part of the name
        header[0] = header[0].removeprefix("\ufeff")
    if tuple(h.strip() for h in header) != HEADER:
        raise RecordingError(file, 1, f"bad header {','.join(header)!r}: expected t,param,value")
    last_t = -math.inf
    for fields in reader:
        if not fields or fields == [""]:
            continue
        row = _parse_row(fields, file, reader.line_num)
        if row.t < last_t:
            raise RecordingError(
                file, reader.line_num, f"time {row.t!r} is earlier than the row before it"
            )
        last_t = row.t
        yield row


def _parse_row(fields: list[str], file: str, line: int) -> Row:
    if len(fields) != len(HEADER):
        raise RecordingError(file, line, f"expected 3 fields, got {len(fields)}")
    t_text, param_text, value_text = (f.strip() for f in fields)
    try:
        t = float(t_text)
    except ValueError:
        raise RecordingError(file, line, f"time {t_text!r} is not a number") from None
    if not math.isfinite(t):
        raise RecordingError(file, line, f"time {t_text!r} is not finite")
    if param_text == "EVENT":
        try:
            return Row(t, SessionEvent(value_text), math.nan)
        except ValueError:
            known = ", ".join(e.value for e in SessionEvent)
            raise RecordingError(
                file, line, f"unknown event {value_text!r} (known: {known})"
            ) from None
    try:
        param = Param(param_text)
    except ValueError:
        raise RecordingError(file, line, f"unknown parameter {param_text!r}") from None
    if value_text == "" or value_text.lower() == "nan":
        return Row(t, param, math.nan)
    try:
        value = float(value_text)
    except ValueError:
        raise RecordingError(file, line, f"value {value_text!r} is not a number") from None
    if math.isinf(value):
        raise RecordingError(file, line, f"value {value_text!r} is not finite")
    return Row(t, param, value)
