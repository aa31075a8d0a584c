"""What the README promises about a restart is what the daemon does.

README "The journal": `MONITORING_GAP` is raised after a restart during a session, and not
after a restart between sessions.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from alarms.policy import load_policy
from kernel.clock import ManualClock
from kernel.vocabulary import SessionEvent
from monitor.bed import Bed
from monitor.daemon import Daemon
from monitor.journal import Journal
from monitor.session import BedCore
from simulators.mqtt_monitor import session_command
from tests.helpers import bed_settings, free_port

README = Path(__file__).resolve().parents[1] / "README.md"
T0 = 1_767_225_600.0
POLICY = load_policy()


def readme_on_monitoring_gap() -> str:
    """The README paragraph that says when `MONITORING_GAP` is raised, on one line."""
    paragraphs = README.read_text(encoding="utf-8").split("\n\n")
    [paragraph] = [p for p in paragraphs if "`MONITORING_GAP`" in p and "restart" in p]
    return re.sub(r"\s+", " ", paragraph)


def test_the_readme_says_monitoring_gap_is_raised_only_during_a_session() -> None:
    text = readme_on_monitoring_gap()
    assert "during a session" in text, text
    assert "between sessions raises nothing" in text, text


def stopped_bed(path: Path, *, in_session: bool) -> None:
    """A bed that ran for a minute from T0, in a session or idle, and stopped."""
    journal = Journal(path)
    clock = ManualClock(T0)
    bed = Bed(
        BedCore(POLICY, ward="w1", bed="b1"),
        clock=clock,
        tick_grace_s=0.0,
        emit=lambda _e, _s: None,
        journal=journal,
    )
    if in_session:
        result = bed.command(json.dumps(session_command(SessionEvent.SESSION_START)).encode())
        assert result["ok"], result
    for second in range(1, 61):
        clock.set(T0 + second)
        bed.tick(T0 + second)
    journal.close()


@pytest.mark.parametrize("in_session", [True, False], ids=["during a session", "between"])
async def test_a_restart_raises_monitoring_gap_only_during_a_session(
    tmp_path: Path, in_session: bool
) -> None:
    path = tmp_path / "journal.sqlite"
    stopped_bed(path, in_session=in_session)
    settings = bed_settings(f"mqtt://127.0.0.1:{free_port()}", tmp_path, drivers=[])
    # back ten minutes after it stopped
    async with Daemon(settings, POLICY, clock=ManualClock(T0 + 660)) as daemon:
        raised = "MONITORING_GAP" in daemon.core.engine.active
        assert (daemon.core.session is not None) is in_session
    assert raised is in_session
