"""Commands in the journal: refusals as bounded summaries, accepted ones as understood.

Issue 17, items 8 and 9: refused commands were journaled whole (1 MB each, kept 30 days), so a
console could fill the bed's disk; a NaN in a numeric field was refused as out of range.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alarms.policy import load_policy
from kernel.clock import ManualClock
from monitor.bed import Bed
from monitor.commands import CommandRejectedError, parse_command
from monitor.inputs import apply, decode
from monitor.journal import Journal
from monitor.session import BedCore

T0 = 1767225600.0


@pytest.fixture
def rig(tmp_path: Path) -> tuple[Bed, Journal]:
    journal = Journal(tmp_path / "journal.sqlite")
    core = BedCore(load_policy(), ward="w1", bed="b1")
    bed = Bed(core, clock=ManualClock(T0), tick_grace_s=0.2, emit=lambda *_: None, journal=journal)
    return bed, journal


def commands(journal: Journal) -> list[dict[str, object]]:
    return [item.data for item in journal.inputs() if item.kind == "command"]


def test_a_refused_megabyte_command_is_journaled_as_a_short_summary(
    rig: tuple[Bed, Journal],
) -> None:
    bed, journal = rig
    huge = {"cmd": "ack", "request_id": "r1", "user": "nurse", "x" * 1_000_000: 1}
    payload = json.dumps(huge).encode()
    result = bed.command(payload)
    assert result["ok"] is False
    assert result["request_id"] == "r1"
    assert len(str(result["error"])) <= 500
    [data] = commands(journal)
    assert len(json.dumps(data)) < 1000
    assert data["bytes"] == len(payload)
    assert data["request_id"] == "r1"
    assert "unknown field" in str(data["refused"])


def test_an_accepted_command_is_journaled_as_understood_without_its_padding(
    rig: tuple[Bed, Journal],
) -> None:
    bed, journal = rig
    padded = b'{"cmd": "audio_pause", "request_id": "r2", "user": "nurse"}' + b" " * 500_000
    assert bed.command(padded)["ok"] is True
    [data] = commands(journal)
    assert len(json.dumps(data)) < 300
    # recovery re-applies exactly that command
    assert parse_command(str(data["payload"]).encode()).cmd == "audio_pause"


def test_resume_passes_over_a_refusal_summary(rig: tuple[Bed, Journal]) -> None:
    bed, journal = rig
    bed.command(b'{"cmd": "nonsense", "request_id": "r3", "user": "nurse"}')
    [item] = [i for i in journal.inputs() if i.kind == "command"]
    fresh = BedCore(load_policy(), ward="w1", bed="b1")
    assert apply(fresh, decode(item)).events == []
    assert fresh.session is None


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_in_a_number_field_is_refused_as_not_a_number(constant: str) -> None:
    payload = (
        '{"cmd": "record_score", "request_id": "r4", "user": "nurse", '
        f'"scale": "PCL-5", "value": {constant}}}'
    ).encode()
    with pytest.raises(CommandRejectedError) as exc:
        parse_command(payload)
    assert "not a JSON number" in exc.value.reason
    assert "200" not in exc.value.reason
