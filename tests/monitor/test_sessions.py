"""`vigil sessions` (issue 11 item 12) and the known sessions `export`/`report` name for an
unknown id, from a real journal (SQLite) written through the `Journal` API the daemon uses."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.cli import main
from monitor.journal import Journal

T0 = 1_767_225_600.123456  # 2026-01-01T00:00:00.123456Z: the listing shows no microseconds
DAY = 86400.0
A = "a1" * 16
B = "b2" * 16
C = "c3" * 16

# in Asia/Kolkata (UTC+05:30, no daylight saving time): opened times as the machine shows them
TABLE = [
    f"  SESSION{' ' * 27}PATIENT  OPENED                     PHASE       INFUSION",
    f"  {A}  P-1      2026-01-01T05:30:00+05:30  discharged  1 of 6",
    f"  {B}  P-1      2026-01-03T05:30:00+05:30  infusion    2 of 6",
    f"  {C}  P-22     2026-01-04T05:30:00+05:30  pre         -",
]


def info(session_id: str, patient: str, opened: float, **steps: float) -> dict[str, Any]:
    return {"session_id": session_id, "patient_id": patient, "opened_t": opened, **steps}


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    path = tmp_path / "journal.sqlite"
    journal = Journal(path)
    try:
        first = info(A, "P-1", T0, infusion_start_t=T0 + 600, infusion_stop_t=T0 + 3000)
        journal.session_opened(first, first_input=1)
        journal.session_closed(A, T0 + 10_500, last_input=9)
        second = info(B, "P-1", T0 + 2 * DAY, infusion_start_t=T0 + 2 * DAY + 600)
        journal.session_opened(second, first_input=10)
        journal.session_opened(info(C, "P-22", T0 + 3 * DAY), first_input=20)
    finally:
        journal.close()
    return path


@pytest.fixture
def kolkata(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_sessions_lists_id_patient_opened_phase_and_infusion(
    journal_path: Path, kolkata: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sessions", "--journal", str(journal_path)]) == 0
    assert capsys.readouterr().out.splitlines() == TABLE


def test_sessions_finds_the_journal_through_the_bed_config(
    journal_path: Path, kolkata: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bed.toml"
    config.write_text(
        f'[bed]\nward = "w1"\nbed = "b1"\n\n[journal]\npath = "{journal_path}"\n',
        encoding="utf-8",
    )
    assert main(["sessions", "--config", str(config)]) == 0
    assert capsys.readouterr().out.splitlines() == TABLE


def test_an_empty_journal_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Journal(tmp_path / "j.sqlite").close()
    assert main(["sessions", "--journal", str(tmp_path / "j.sqlite")]) == 0
    assert capsys.readouterr().out == "no sessions in the journal\n"


def test_no_journal_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sessions", "--journal", str(tmp_path / "none.sqlite")]) == 2
    assert capsys.readouterr().err == f"vigil sessions: no journal at {tmp_path / 'none.sqlite'}\n"
    assert main(["export", "s1", "--journal", str(tmp_path / "none.sqlite")]) == 2
    assert capsys.readouterr().err == f"vigil export: no journal at {tmp_path / 'none.sqlite'}\n"


def test_export_of_an_unknown_id_names_the_known_sessions(
    journal_path: Path, kolkata: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "d4", "--csv", "--journal", str(journal_path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == ["vigil export: no session 'd4'; known sessions:", *TABLE]


def test_report_of_an_unknown_id_names_the_known_sessions(
    journal_path: Path, kolkata: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.html"
    assert main(["report", "d4", "--journal", str(journal_path), "--out", str(out)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == ["vigil report: no session 'd4'; known sessions:", *TABLE]
    assert not out.exists()


def test_an_ambiguous_prefix_names_the_sessions_it_matches(
    tmp_path: Path, kolkata: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "j.sqlite"
    journal = Journal(path)
    try:
        journal.session_opened(info("ab" + "0" * 30, "P-1", T0), first_input=1)
        journal.session_opened(info("ab" + "1" * 30, "P-2", T0 + DAY), first_input=2)
    finally:
        journal.close()
    assert main(["export", "ab", "--csv", "--journal", str(path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "vigil export: session 'ab' is ambiguous; it matches:"
    assert [line.split()[0] for line in err[1:]] == ["SESSION", "ab" + "0" * 30, "ab" + "1" * 30]
