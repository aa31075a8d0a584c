"""Write scenario items as a recording CSV, the input of `vigil replay` (docs/ARCHITECTURE.md).

The format: header `t,param,value`; one row per sample (`param` from the vocabulary) and one per
session step (`param` `EVENT`, `value` the step's name); an invalid sample or one without a value
has an empty `value`. Numbers are written losslessly: a whole number in integer form
(`1767225600`, `70`), anything else as Python's shortest round-tripping `repr` (`1767225600.25`),
so `float(text)` gives back the exact float.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from simulators.scenarios import ScenarioItem, Step

__all__ = ["EVENT", "HEADER", "format_number", "write_recording"]

HEADER = ("t", "param", "value")
EVENT = "EVENT"


def format_number(x: float) -> str:
    """`x` as recording text: integer form when whole, else `repr`; `float()` reads it back exactly.

    Raises `ValueError` for NaN and infinities, which are not numbers a recording can carry.
    """
    if not math.isfinite(x):
        raise ValueError(f"not a finite number: {x!r}")
    if x.is_integer():
        return str(int(x))
    return repr(float(x))


def _row(item: ScenarioItem) -> tuple[str, str, str]:
    if isinstance(item, Step):
        return format_number(item.t), EVENT, item.event.value
    ok = item.valid and math.isfinite(item.value)
    return format_number(item.t), item.param.value, format_number(item.value) if ok else ""


def write_recording(
    items: Iterable[ScenarioItem], path_or_file: str | os.PathLike[str] | TextIO
) -> int:
    """Write `items`, in the order given, as a recording CSV; return the number of data rows.

    `path_or_file` is a path (the file is created or replaced, UTF-8, LF line ends) or an
    open text file (written to, not closed; open it with `newline=""`). Items should already be
    in time order, as `build_scenario` gives them: the format requires it and this function
    does not reorder.
    """
    if isinstance(path_or_file, str | os.PathLike):
        with Path(path_or_file).open("w", encoding="utf-8", newline="") as f:
            return _write(items, f)
    return _write(items, path_or_file)


def _write(items: Iterable[ScenarioItem], f: TextIO) -> int:
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(HEADER)
    rows = 0
    for item in items:
        writer.writerow(_row(item))
        rows += 1
    return rows
