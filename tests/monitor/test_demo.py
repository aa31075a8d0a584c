"""`vigil demo` as the README runs it: a whole surge session, alarms printed, exit 0."""

from __future__ import annotations

import subprocess
import sys

import pytest


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
    assert "BP_CRISIS ESCALATED (level 1)" in out
    assert "BP_CRISIS ACKNOWLEDGED by demo-nurse" in out
    summary = out[out.index("Summary") :]
    assert "samples received by the daemon" in summary
    assert "BP_CRISIS active" in summary
    # no flapping technical alarms: the data kept up with the simulated clock
    assert "NO_DATA" not in out
