"""bench/ward.py on a small ward: every alarm event accounted for, every process stopped.

The bench's own accounting is checked against the beds' journals, read here: each bed's
`events` table (every alarm event it raised, by `seq`) must be what its console received, once
each, and the scripted sessions must have run (the surge bed's `BP_CRISIS`, the desaturation
bed's `DESAT_CRITICAL`, both sessions closed by the console's discharge).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "ward.py"


def _processes_naming(text: str) -> list[str]:
    """Command lines of the running processes that contain `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if text in argv:
                found.append(argv)
    return found


def _journal(path: Path) -> tuple[list[int], set[str], int, int]:
    """(every event's seq, the codes raised, sessions closed, events left in the outbox)."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        seqs = [seq for (seq,) in db.execute("SELECT seq FROM events ORDER BY seq")]
        raised = {c for (c,) in db.execute("SELECT code FROM events WHERE state = 'active'")}
        (closed,) = db.execute("SELECT COUNT(closed_t) FROM sessions").fetchone()
        (outbox,) = db.execute("SELECT COUNT(*) FROM outbox").fetchone()
    return seqs, raised, closed, outbox


def test_two_beds_every_alarm_event_reaches_the_console_once(tmp_path: Path) -> None:
    keep, out = tmp_path / "ward", tmp_path / "ward.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--beds", "2", "--speed", "250", "--observation-min", "5",
         "--keep", str(keep), "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    designed = {"b0": "BP_CRISIS", "b1": "DESAT_CRITICAL"}  # hypertensive-surge, desaturation
    for bed, code in designed.items():
        seqs, raised, closed, outbox = _journal(keep / bed / "journal.sqlite")
        assert seqs == list(range(1, len(seqs) + 1))
        assert code in raised
        received = report["beds"][bed]["received"]
        assert sorted(received) == seqs  # none missing, none twice, none the bed did not raise
        assert closed == 1
        assert outbox == 0
    assert "missing 0, repeated 0" in done.stdout
    latency = report["latency"]
    assert latency["alarm_path"]["n"] >= len(designed)
    assert latency["baseline"]["n"] > 0
    assert _processes_naming(str(keep)) == []


def test_ctrl_c_stops_every_process_the_bench_started(tmp_path: Path) -> None:
    keep = tmp_path / "ward"
    bench = subprocess.Popen(
        [sys.executable, str(BENCH), "--beds", "2", "--speed", "250", "--keep", str(keep)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        logs = [keep / bed / "daemon.log" for bed in ("b0", "b1")]
        deadline = time.monotonic() + 30
        # interrupted mid-session: both beds have taken the simulated nurse's `open_session`
        while time.monotonic() < deadline and not all(
            log.exists() and "cmd=open_session" in log.read_text(errors="replace") for log in logs
        ):
            time.sleep(0.2)
        assert len(_processes_naming(str(keep))) >= 3  # the broker and both beds
        os.kill(bench.pid, signal.SIGINT)
        _, err = bench.communicate(timeout=40)
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.communicate()
    assert bench.returncode == 130, err
    assert _processes_naming(str(keep)) == []
