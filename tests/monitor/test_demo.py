"""`vigil demo` as the README runs it: a whole surge session, alarms printed, exit 0."""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from monitor.console import LineConsole
from monitor.demo import DemoResult, summary
from tests.helpers import run_vigil

_TIME = re.compile(r"^(\d\d):(\d\d):(\d\d)[+-]\d\d:\d\d ")


def _seconds(line: str) -> int | None:
    m = _TIME.match(line)
    return None if m is None else int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3])


@pytest.mark.timeout(240)
def test_demo_prints_the_surge_alarms_and_exits_0() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "not a certified medical device" in out
    # the alarms hypertensive-surge is designed to raise (see config/recordings/README.md)
    for code in ("SYMPATHOMIMETIC_SURGE", "BP_RISE", "BP_HIGH", "BP_CRISIS"):
        assert f"{code} ACTIVE" in out, out[-3000:]
    assert "BP_CRISIS ACKNOWLEDGED by demo-nurse" in out
    summary_text = out[out.index("Summary") :]
    assert "samples received by the daemon" in summary_text
    assert "BP_CRISIS active" in summary_text
    # no flapping technical alarms: the data kept up with the simulated clock
    assert "NO_DATA" not in out

    session = out[: out.index("\nSummary")].splitlines()
    # the title comes first, before anything the session prints
    assert session[0].startswith("Vigil demo: scenario hypertensive-surge"), session[:3]
    # the central station serves the ward meanwhile, and says where
    assert re.fullmatch(
        r"Central station: http://127\.0\.0\.1:\d+/ \(user demo-nurse, password \S+\)", session[1]
    ), session[:3]
    # times never go backwards from line to line (a wrap past midnight is a day later)
    times = [s for s in map(_seconds, session) if s is not None]
    steps = [(b - a) % 86400 for a, b in itertools.pairwise(times)]
    assert all(step < 12 * 3600 for step in steps), [
        line for line in session if _seconds(line) is not None
    ]
    # the escalation is said once, with how long the alarm went unacknowledged: the time from
    # its ACTIVE line to its ESCALATED line
    (active,) = [line for line in session if "BP_CRISIS ACTIVE" in line]
    (escalated,) = [line for line in session if "BP_CRISIS ESCALATED" in line]
    m = re.search(r"BP_CRISIS ESCALATED level 1 \(not acknowledged for (\d+) s\)$", escalated)
    assert m is not None, escalated
    since = (_seconds(escalated) or 0) - (_seconds(active) or 0)
    assert int(m[1]) == since % 86400
    assert "not acknowledged: escalation level" not in out
    # fewer samples reach the ward than the daemon received, and the summary says why
    assert "forwards at most one sample per parameter per 30 s" in summary_text


def test_a_quiet_session_says_there_were_no_alarm_events() -> None:
    out = io.StringIO()
    summary(DemoResult(LineConsole(out=io.StringIO()), {}), out)
    text = out.getvalue()
    assert "no alarm events" in text
    assert "0 alarm events" not in text


def _descendants(pid: int) -> set[int]:
    """Every process below `pid` (children, their children, ...)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        with contextlib.suppress(FileNotFoundError):
            for task in Path(f"/proc/{parent}/task").iterdir():
                with contextlib.suppress(FileNotFoundError):
                    kids = {int(p) for p in (task / "children").read_text().split()}
                    todo += kids - found
                    found |= kids
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("signum", "status"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"]
)
def test_a_stop_signal_stops_broker_and_simulator_without_a_traceback(
    signum: signal.Signals, status: int
) -> None:
    # its own process group, as a shell runs a foreground job: Ctrl-C signals the whole group
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor.cli", "demo", "--speed", "100"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    children: set[int] = set()
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        seen: list[str] = []
        # the simulator has opened the session: broker, simulator, daemon and console all run
        while "phase -> pre" not in "".join(seen) and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
        assert "phase -> pre" in "".join(seen), seen
        children = _descendants(proc.pid)
        assert len(children) >= 2  # the embedded broker and the simulator
        if signum is signal.SIGINT:
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C at the terminal does
        else:
            proc.send_signal(signal.SIGTERM)  # what kill(1) or a service manager does
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == status, err[-3000:]
        assert "Traceback" not in err
        assert "Error" not in err
        assert f"vigil demo: stopped by {signum.name}" in err
        assert "Summary" in out
        assert [p for p in children if _alive(p)] == []
    finally:
        for pid in {*children, *_descendants(proc.pid)}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_demo_help_documents_the_exit_status_on_a_stop_signal() -> None:
    done = run_vigil("demo", "--help", timeout=30)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    text = " ".join(out.split())
    assert "0 when the session has run or the demo was stopped by SIGTERM" in text
    assert "130 when stopped by Ctrl-C (SIGINT)" in text


