"""The recording CSV writer: format of docs/ARCHITECTURE.md "Recording CSV", read back by `csv`."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alarms.recording_io import format_number, write_recording
from kernel.vocabulary import Param, Sample, SessionEvent, Step
from simulators.scenarios import build_scenario

T0 = 1767225600.0


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_scenario_round_trip(tmp_path: Path) -> None:
    items = build_scenario("desaturation", t0=T0 + 0.5, seed=3)
    path = tmp_path / "session.csv"
    assert write_recording(items, path) == len(items)
    assert path.read_text(encoding="utf-8").startswith("t,param,value\n")
    rows = _read(path)
    assert len(rows) == len(items)
    for row, item in zip(rows, items, strict=True):
        assert float(row["t"]) == item.t
        if isinstance(item, Step):
            assert row["param"] == "EVENT"
            assert SessionEvent(row["value"]) is item.event
        else:
            assert Param(row["param"]) is item.param
            assert float(row["value"]) == item.value
    # Integers are written as integers, the way the worked examples are.
    hr = items[1]
    assert isinstance(hr, Sample)
    assert rows[1] == {"t": "1767225600.5", "param": "HR", "value": str(int(hr.value))}


def test_whole_times_are_written_as_integers(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    write_recording(
        [
            Step(T0, SessionEvent.SESSION_START),
            Sample(T0 + 5, Param.HR, 70.0, valid=True, device_id="m"),
            Sample(T0 + 5.25, Param.SPO2, 97.5, valid=True, device_id="m"),
        ],
        path,
    )
    assert path.read_text(encoding="utf-8").splitlines() == [
        "t,param,value",
        "1767225600,EVENT,session_start",
        "1767225605,HR,70",
        "1767225605.25,SPO2,97.5",
    ]


def test_invalid_and_missing_values_are_empty(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    write_recording(
        [
            Sample(T0, Param.SPO2, math.nan, valid=True, device_id="m"),
            Sample(T0 + 1, Param.SPO2, 97.0, valid=False, device_id="m", reason="sensor off"),
            Sample(T0 + 2, Param.SPO2, 97.0, valid=True, device_id="m"),
        ],
        path,
    )
    assert [r["value"] for r in _read(path)] == ["", "", "97"]


def test_writes_to_an_open_file_and_leaves_it_open() -> None:
    buf = io.StringIO(newline="")
    n = write_recording([Step(T0, SessionEvent.DISCHARGE)], buf)
    assert n == 1
    assert not buf.closed
    assert buf.getvalue() == "t,param,value\n1767225600,EVENT,discharge\n"


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_numbers_round_trip_exactly(x: float) -> None:
    text = format_number(x)
    assert float(text) == x
    if x.is_integer():
        assert text.lstrip("-").isdigit()


@pytest.mark.parametrize("x", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused(x: float) -> None:
    with pytest.raises(ValueError, match="not a finite number"):
        format_number(x)
