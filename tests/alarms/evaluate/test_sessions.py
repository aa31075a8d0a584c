"""Recordings replayed through the real engine and cut into sessions (expected by hand, from
docs/ALARMS.md)."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from alarms.engine import Rows
from alarms.evaluate import sessions as sessions_module
from alarms.evaluate.sessions import (
    Activation,
    evaluate_file,
    events_path,
    read_events,
    recordings_under,
)
from alarms.policy import load_policy
from kernel.vocabulary import Phase, Priority

T0 = 1767225600


def _write(path: Path, rows: list[tuple[int, str, str]]) -> Path:
    rows = sorted(rows, key=lambda r: r[0])  # stable: rows of one second keep their order
    path.write_text(
        "t,param,value\n" + "".join(f"{T0 + t},{p},{v}\n" for t, p, v in rows), encoding="utf-8"
    )
    return path


def _two_sessions() -> list[tuple[int, str, str]]:
    """Session 1 (0 -> 2000): one cuff at 185/100 in the infusion. Between sessions, HR 150
    for 15 s. Session 2 (2200 -> 3000): SpO2 80 for 21 s in pre; never infused."""
    rows: list[tuple[int, str, str]] = []
    for t, step in (
        (0, "session_start"),
        (600, "infusion_start"),
        (1500, "infusion_stop"),
        (2000, "discharge"),
        (2200, "session_start"),
        (3000, "discharge"),
    ):
        rows.append((t, "EVENT", step))
    for t in range(3000):
        hr = 150 if 2100 <= t < 2115 else 70
        spo2 = 80 if 2700 <= t <= 2720 else 97
        rows += [(t, "HR", str(hr)), (t, "PR", str(hr)), (t, "SPO2", str(spo2))]
    for t, sys_, dia in (
        (60, 120, 80),
        (360, 120, 80),
        (900, 185, 100),
        (1200, 150, 90),
        (1800, 125, 80),
        (2260, 120, 80),
        (2560, 120, 80),
    ):
        rows += [(t, "NIBP_SYS", str(sys_)), (t, "NIBP_DIA", str(dia)), (t, "NIBP_MEAN", "95")]
    return rows


def test_sessions_are_cut_at_session_start_and_discharge(tmp_path: Path) -> None:
    result = evaluate_file(_write(tmp_path / "r.csv", _two_sessions()), load_policy())
    assert result.error is None
    first, second = result.sessions
    assert (first.start, first.infusion_start, first.infusion_stop, first.end) == (
        T0,
        T0 + 600,
        T0 + 1500,
        T0 + 2000,
    )
    assert first.discharged
    # BP_HIGH at the 185/100 determination, cleared at the next one (150/90)
    assert first.activations == (
        Activation(
            "BP_HIGH",
            Priority.MEDIUM,
            Phase.INFUSION,
            T0 + 900,
            T0 + 1200,
            cleared=True,
            param="NIBP_SYS",  # 185 >= 180; the DIA 100 is under 110
        ),
    )
    assert (second.start, second.infusion_start, second.end) == (T0 + 2200, None, T0 + 3000)
    # DESAT_CRITICAL (< 85 for 5 s, every phase) at 2705, latched: the discharge clears it
    assert second.activations == (
        Activation(
            "DESAT_CRITICAL",
            Priority.HIGH,
            Phase.PRE,
            T0 + 2705,
            T0 + 3000,
            cleared=True,
            param="SPO2",
        ),
    )
    # TACHY_SEVERE at 2110 (>= 140 for 10 s) in phase none: outside any session
    assert result.outside == 1
    assert result.rows == len(_two_sessions())


def test_a_session_without_discharge_ends_at_the_last_row(tmp_path: Path) -> None:
    rows = [r for r in _two_sessions() if r[0] < 2400 and r[2] != "discharge"]
    result = evaluate_file(_write(tmp_path / "r.csv", rows), load_policy())
    first, second = result.sessions
    # the second session_start ends the first; the second ends at the last row
    assert (first.end, first.discharged) == (T0 + 2200, False)
    assert (second.start, second.end, second.discharged) == (T0 + 2200, T0 + 2399, False)
    # TACHY_SEVERE now rises in post of the first session (no discharge): latched, never cleared
    tachy = [a for a in first.activations if a.code == "TACHY_SEVERE"]
    assert tachy == [
        Activation(
            "TACHY_SEVERE",
            Priority.HIGH,
            Phase.POST,
            T0 + 2110,
            T0 + 2200,
            cleared=False,
            param="HR",
        )
    ]


def test_bad_recordings_and_annotations_are_located(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("t,param,value\n1,HR,70\n2,XX,1\n", encoding="utf-8")
    assert evaluate_file(bad, load_policy()).error == f"{bad}:3: unknown parameter 'XX'"
    good = _write(tmp_path / "good.csv", _two_sessions())
    events_path(good).write_text("t,code\n1767225900,BP_HIGH\nsoon,DESAT\n", encoding="utf-8")
    err = evaluate_file(good, load_policy()).error
    assert err == f"{events_path(good)}:3: time 'soon' is not a number"
    events_path(good).write_text("t,code\n1767225900,BP_HIHG\n", encoding="utf-8")
    err = evaluate_file(good, load_policy()).error
    assert err == f"{events_path(good)}:2: 'BP_HIHG' is not an alarm code of the policy"
    missing = tmp_path / "none.csv"
    assert evaluate_file(missing, load_policy()).error == f"{missing}: No such file or directory"


def test_annotations_go_to_the_session_that_holds_them(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.csv", _two_sessions())
    assert events_path(path) == tmp_path / "r.events.csv"
    events_path(path).write_text(
        f"t,code\n{T0 + 890},BP_HIGH\n{T0 + 2100},TACHY_SEVERE\n{T0 + 2700},DESAT_CRITICAL\n",
        encoding="utf-8",
    )
    first, second = evaluate_file(path, load_policy()).sessions
    assert [(e.t - T0, e.code) for e in first.true_events] == [(890, "BP_HIGH")]
    assert [(e.t - T0, e.code) for e in second.true_events] == [(2700, "DESAT_CRITICAL")]
    assert read_events(tmp_path / "absent.events.csv") == []


def test_folders_are_searched_and_annotations_skipped(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    for name in ("b/2.csv", "1.csv", "1.events.csv", "notes.txt", "b/3.parquet"):
        (tmp_path / name).write_text("", encoding="utf-8")
    found = recordings_under([tmp_path, tmp_path / "1.csv"])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "1.csv",
        "b/2.csv",
        "b/3.parquet",
    ]


def test_parquet_is_read_by_the_columnar_reader_or_refused_by_name(tmp_path: Path) -> None:
    """Parquet needs `alarms.recording_io`; `read_rows` uses it whenever it is installed."""
    path = _write(tmp_path / "r.csv", _two_sessions())
    parquet = tmp_path / "r.parquet"
    if importlib.util.find_spec("alarms.recording_io") is None:
        parquet.write_bytes(b"PAR1")
        assert evaluate_file(parquet, load_policy()).error == (
            f"{parquet}:1: Parquet recordings need the columnar reader, not in this version"
        )
        return
    recording_io = importlib.import_module("alarms.recording_io")
    recording_io.write_parquet(recording_io.read_all(path), parquet)
    from_csv = evaluate_file(path, load_policy()).sessions
    from_parquet = evaluate_file(parquet, load_policy()).sessions
    assert [replace(s, file="") for s in from_parquet] == [replace(s, file="") for s in from_csv]
    assert len(from_csv) == 2


@pytest.mark.parametrize("text", ["t,when\n", ""])
def test_an_annotation_file_needs_its_header(tmp_path: Path, text: str) -> None:
    path = tmp_path / "x.events.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=r"x\.events\.csv:1: bad header: expected t,code"):
        read_events(path)


def test_a_recording_read_in_blocks_gives_the_same_sessions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The columnar reader streams a big file in blocks: the cut must not depend on them."""
    path = _write(tmp_path / "r.csv", _two_sessions())
    whole = evaluate_file(path, load_policy())
    batch = sessions_module.read_rows(path)

    def in_blocks(_path: Path) -> Iterator[Rows]:
        # blocks that split a determination and fall on both session starts
        for a, b in ((0, 1), (1, 2700), (2700, 6601), (6601, len(batch))):
            yield Rows(batch.t[a:b], batch.what[a:b], batch.value[a:b], batch.valid[a:b])

    monkeypatch.setattr(sessions_module, "read_batches", in_blocks)
    blocks = evaluate_file(path, load_policy())
    assert blocks == whole
    assert len(blocks.sessions) == 2
