"""tests/data/clinical/: `vigil replay` reproduces every expected event (docs/ALARMS.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alarms.policy import load_policy
from alarms.replay import replay_file
from tests.helpers import run_vigil

# Kept in the repository (its README names the readings each checks): a fresh clone tests alone
EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "clinical"
NAMES = ["surge", "desaturation", "no-data", "discharge"]
# docs/ALARMS.md "Precise reading" 15 and tests/data/clinical/README.md: exact in every event ...
EXACT = ("t", "code", "priority", "kind", "state", "phase", "level")
# ... and in active events also these
EXACT_ACTIVE = ("param", "value", "limit")


def _exact(event: dict[str, object]) -> dict[str, object]:
    keys = EXACT + (EXACT_ACTIVE if event["state"] == "active" else ())
    return {k: event.get(k) for k in keys}


def _expected(name: str) -> list[dict[str, object]]:
    lines = (EXAMPLES / f"{name}.expected.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_examples_are_present() -> None:
    assert all((EXAMPLES / f"{n}.csv").is_file() for n in NAMES), EXAMPLES


@pytest.mark.parametrize("name", NAMES)
def test_replay_reproduces_example(name: str) -> None:
    events = [e.to_json() for e in replay_file(EXAMPLES / f"{name}.csv", load_policy())]
    assert [_exact(e) for e in events] == [_exact(e) for e in _expected(name)]


@pytest.mark.parametrize("name", NAMES)
def test_replay_matches_informative_fields_too(name: str) -> None:
    """Not required by the spec, but a regression net: the whole objects but `message`."""
    events = [e.to_json() for e in replay_file(EXAMPLES / f"{name}.csv", load_policy())]

    def strip(e: dict[str, object]) -> dict[str, object]:
        return {k: v for k, v in e.items() if k != "message"}

    assert [strip(e) for e in events] == [strip(e) for e in _expected(name)]


def test_cli_replay_prints_json_lines_and_summary() -> None:
    proc = run_vigil("replay", EXAMPLES / "surge.csv", "--summary")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [_exact(e) for e in lines] == [_exact(e) for e in _expected("surge")]
    assert "BP_CRISIS escalated" in proc.stderr
    assert f"{len(lines):6d}  events" in proc.stderr
