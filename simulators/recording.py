"""Write scenario items as a recording CSV, the input of `vigil replay` (docs/ARCHITECTURE.md).

The format: header `t,param,value`; one row per sample (`param` from the vocabulary) and one per
session step (`param` `EVENT`, `value` the step's name); an invalid sample or one without a value
has an empty `value`. Numbers are written losslessly: a whole number in integer form
(`1767225600`, `70`), anything else as Python's shortest round-tripping `repr` (`1767225600.25`),
so `float(text)` gives back the exact float.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from typing import TextIO

from alarms.recording_io import EVENT, HEADER, RowLike, format_number
from alarms.recording_io import write_recording as _write_rows
from simulators.scenarios import ScenarioItem, Step

__all__ = ["EVENT", "HEADER", "format_number", "write_recording"]


def _rows(items: Iterable[ScenarioItem]) -> Iterator[RowLike]:
    for item in items:
        if isinstance(item, Step):
            yield item.t, item.event, math.nan
        else:
            yield item.t, item.param, item.value if item.valid else math.nan


def write_recording(
    items: Iterable[ScenarioItem], path_or_file: str | os.PathLike[str] | TextIO
) -> int:
    """Write `items`, in the order given, as a recording CSV; return the number of data rows.

    `path_or_file` is a path (the file is created or replaced, UTF-8, LF line ends) or an
    open text file (written to, not closed; open it with `newline=""`). Items should already be
    in time order, as `build_scenario` gives them: the format requires it and this function
    does not reorder. The writer is `alarms.recording_io`'s, shared with `vigil replay`'s reader.
    """
    return _write_rows(_rows(items), path_or_file)
