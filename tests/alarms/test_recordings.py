"""config/recordings/: each simulator scenario as a recording, and the events it must give.

The expected files were checked event by event against docs/ALARMS.md (see
config/recordings/README.md). These tests pin the exact fields of "Precise reading" 15.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from alarms.policy import load_policy
from alarms.recording_io import write_recording
from alarms.replay import replay_file
from simulators.scenarios import SCENARIOS, build_scenario

RECORDINGS = Path(__file__).resolve().parents[2] / "config" / "recordings"
NAMES = ["normal-session", "hypertensive-surge", "desaturation"]
T0 = 1767225600.0  # 2026-01-01T00:00:00Z
SEED = 1
EXACT = ("t", "code", "priority", "kind", "state", "phase", "level")
EXACT_ACTIVE = ("param", "value", "limit")


def exact(event: dict[str, Any]) -> dict[str, Any]:
    keys = EXACT + (EXACT_ACTIVE if event["state"] == "active" else ())
    return {k: event.get(k) for k in keys}


def expected(name: str) -> list[dict[str, Any]]:
    text = (RECORDINGS / f"{name}.expected.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def replayed(name: str) -> list[dict[str, Any]]:
    return [e.to_json() for e in replay_file(RECORDINGS / f"{name}.csv", load_policy())]


def test_one_recording_per_scenario() -> None:
    assert sorted(SCENARIOS) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_recording_is_the_scenario_seed_1(name: str) -> None:
    """The committed CSV is exactly what the documented command writes today."""
    buf = io.StringIO(newline="")
    write_recording(build_scenario(name, t0=T0, seed=SEED), buf)
    assert (RECORDINGS / f"{name}.csv").read_text(encoding="utf-8") == buf.getvalue()


@pytest.mark.parametrize("name", NAMES)
def test_replay_gives_the_expected_events(name: str) -> None:
    assert [exact(e) for e in replayed(name)] == [exact(e) for e in expected(name)]


def brief(events: list[dict[str, Any]]) -> list[tuple[float, str, str]]:
    return [(e["t"] - T0, e["code"], e["state"]) for e in events]


# The tables of config/recordings/README.md, so the expected files cannot drift from them.
TABLES: dict[str, list[tuple[float, str, str]]] = {
    "normal-session": [],
    "hypertensive-surge": [
        (1470, "SYMPATHOMIMETIC_SURGE", "active"),
        (2070, "BP_RISE", "active"),
        (2370, "BP_HIGH", "active"),
        (2670, "BP_CRISIS", "active"),
        (2730, "BP_CRISIS", "escalated"),
        (2790, "BP_CRISIS", "escalated"),
        (2850, "BP_CRISIS", "escalated"),
        (3870, "BP_HIGH", "cleared"),
        (3870, "BP_RISE", "cleared"),
        (4770, "SYMPATHOMIMETIC_SURGE", "cleared"),
        (10500, "BP_CRISIS", "cleared"),
    ],
    "desaturation": [
        (1900, "DESAT", "active"),
        (1931, "DESAT_SEVERE", "active"),
        (1946, "DESAT_CRITICAL", "active"),
        (1991, "DESAT_SEVERE", "escalated"),
        (2006, "DESAT_CRITICAL", "escalated"),
        (2051, "DESAT_SEVERE", "escalated"),
        (2066, "DESAT_CRITICAL", "escalated"),
        (2091, "DESAT", "cleared"),
        (2111, "DESAT_SEVERE", "escalated"),
        (2126, "DESAT_CRITICAL", "escalated"),
        (10500, "DESAT_SEVERE", "cleared"),
        (10500, "DESAT_CRITICAL", "cleared"),  # Reading 14: discharge clears latched alarms
    ],
}


@pytest.mark.parametrize("name", NAMES)
def test_expected_file_is_the_readme_table(name: str) -> None:
    assert brief(expected(name)) == TABLES[name]
