"""`vigil` as a shell pipeline runs it: a reader that stops early (`| head`) is a normal end.

Each command runs as a child process whose stdout is a real pipe with its read end already
closed, so its first write fails with EPIPE, as when `head` has had its lines and exits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from alarms.policy import load_policy
from kernel.clock import ManualClock
from kernel.vocabulary import Param, Sample, SessionEvent
from monitor.bed import Bed
from monitor.journal import Journal
from monitor.session import BedCore
from simulators.mqtt_monitor import session_command

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_767_225_600.0
RAD8 = (
    b"02/15/24 14:03:22 SN=0000012345 SPO2=098% BPM=072 PI=03.60% SPCO=--.-% SPMET=--.-% "
    b"DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800\r\n"
)


def into_closed_pipe(*args: str | Path) -> tuple[int, str]:
    """Run `vigil ARGS` with stdout a pipe nobody reads any more; its exit status and stderr."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "monitor.cli", *map(str, args)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
            timeout=60,
            cwd=ROOT,
        )
    finally:
        os.close(write_end)
    return proc.returncode, proc.stderr


def test_decode_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    capture = tmp_path / "rad8.raw"
    capture.write_bytes(RAD8 * 2000)  # far more than a pipe holds
    status, stderr = into_closed_pipe("decode", "masimo", capture)
    assert "Traceback" not in stderr
    assert "BrokenPipeError" not in stderr
    assert status == 0


def test_replay_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    # no pre determination at infusion start: BASELINE_INCOMPLETE, one event to write
    rec = tmp_path / "rec.csv"
    rec.write_text(
        f"t,param,value\n{T0:.0f},EVENT,session_start\n{T0 + 1:.0f},EVENT,infusion_start\n"
        f"{T0 + 2:.0f},SPO2,97\n",
        encoding="utf-8",
    )
    status, stderr = into_closed_pipe("replay", rec)
    assert "Traceback" not in stderr
    assert "BrokenPipeError" not in stderr
    assert status == 0


@pytest.fixture
def journal_with_a_session(tmp_path: Path) -> tuple[Path, str]:
    """A journal holding one session with a few minutes of vitals, made as the daemon makes it."""
    path = tmp_path / "journal.sqlite"
    journal = Journal(path)
    clock = ManualClock(T0)
    bed = Bed(
        BedCore(load_policy(), ward="w1", bed="b1"),
        clock=clock,
        tick_grace_s=0.0,
        emit=lambda _e, _s: None,
        journal=journal,
    )
    result = bed.command(json.dumps(session_command(SessionEvent.SESSION_START)).encode())
    assert result["ok"], result
    for second in range(1, 301):
        clock.set(T0 + second)
        bed.samples.put(Sample(T0 + second, Param.HR, 70.0, valid=True, device_id="mon1"))
        bed.samples.put(Sample(T0 + second, Param.SPO2, 97.0, valid=True, device_id="mon1"))
        bed.tick(T0 + second)
    bed.drain()
    [record] = journal.sessions()
    journal.close()
    return path, record.session_id


def test_export_into_a_closed_pipe_ends_quietly(journal_with_a_session: tuple[Path, str]) -> None:
    path, session_id = journal_with_a_session
    status, stderr = into_closed_pipe("export", session_id, "--csv", "--journal", path)
    assert "Traceback" not in stderr
    assert "BrokenPipeError" not in stderr
    assert status == 0
