"""`vigil replay FILE.csv [--config POLICY] [--summary]` as a user runs it: a child process.

Recording format: docs/ARCHITECTURE.md "Recording CSV". Expected events come from docs/ALARMS.md.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from alarms.policy import load_policy
from kernel.paths import default_policy_path
from tests.helpers import run_vigil

ROOT = Path(__file__).resolve().parents[2]
T0 = 1767225600
HEADER = "t,param,value"


def vigil_replay(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return run_vigil("replay", *args, cwd=ROOT)


def write(tmp_path: Path, lines: Iterable[str], name: str = "rec.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def infusion_lines() -> list[str]:
    """Header, session_start at +0 and infusion_start at +1 (no pre determination)."""
    return [HEADER, f"{T0},EVENT,session_start", f"{T0 + 1},EVENT,infusion_start"]


def at(off: int) -> str:
    return str(T0 + off)


def seconds(start: int, end: int, spo2: dict[int, str] | str, hr: str = "70") -> list[str]:
    """HR and SPO2 rows every second in [start, end]; `spo2` per offset or one value."""
    out = []
    for off in range(start, end + 1):
        value = spo2 if isinstance(spo2, str) else spo2[off]
        out += [f"{at(off)},HR,{hr}", f"{at(off)},SPO2,{value}"]
    return out


def events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def brief(stdout: str) -> list[tuple[float, str, str]]:
    return [(e["t"] - T0, e["code"], e["state"]) for e in events(stdout)]


# docs/ALARMS.md "Table" BASELINE_INCOMPLETE: no pre determination at infusion start (+1).
BASELINE = (1.0, "BASELINE_INCOMPLETE", "active")


# ---------------------------------------------------------------- malformed recordings

GOOD = [*infusion_lines(), f"{T0 + 2},SPO2,97"]  # lines 1-4; replayed alone, +1 raises an event

MALFORMED = {
    "bad header": (["time,param,value", *GOOD[1:]], 1),
    "header with a fourth column": (["t,param,value,unit", *GOOD[1:]], 1),
    "unknown parameter": ([*GOOD, f"{T0 + 3},BP,120"], 5),
    "lower-case parameter": ([*GOOD, f"{T0 + 3},spo2,97"], 5),
    "unknown event": ([*GOOD, f"{T0 + 3},EVENT,infusion_pause"], 5),
    "time going backwards": ([*GOOD, f"{T0 + 3},HR,70", f"{T0 + 2.5},HR,70"], 6),
    "non-numeric value": ([*GOOD, f"{T0 + 3},HR,high"], 5),
    "non-numeric time": ([*GOOD, "noon,HR,70"], 5),
    "empty time": ([*GOOD, ",HR,70"], 5),
    "too few fields": ([*GOOD, f"{T0 + 3},HR"], 5),
    "too many fields": ([*GOOD, f"{T0 + 3},HR,70,/min"], 5),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_recording_is_refused_with_file_and_line(tmp_path: Path, case: str) -> None:
    lines, bad_line = MALFORMED[case]
    path = write(tmp_path, lines)
    proc = vigil_replay(path)
    assert proc.returncode == 1, proc
    assert proc.stdout == ""  # refused before any event is printed
    assert str(path) in proc.stderr
    assert re.search(rf"(:{bad_line}\b|line {bad_line}\b)", proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_line_late_in_the_file_prints_no_event(tmp_path: Path) -> None:
    # a desaturation that would raise DESAT at +17, then a bad row on line 3 + 2 * 30 + 1 = 64
    lines = [*infusion_lines(), *seconds(2, 31, "91"), f"{T0 + 32},SPO2,ninety"]
    path = write(tmp_path, lines)
    proc = vigil_replay(path)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert re.search(r"(:64\b|line 64\b)", proc.stderr), proc.stderr
    assert "ninety" in proc.stderr


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    proc = vigil_replay(path)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert str(path) in proc.stderr
    assert "no such file" in proc.stderr.lower()
    assert "Traceback" not in proc.stderr


def test_header_only_recording_gives_no_event(tmp_path: Path) -> None:
    proc = vigil_replay(write(tmp_path, [HEADER]))
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


# ---------------------------------------------------------------- invalid samples


def test_good_prefix_gives_its_event(tmp_path: Path) -> None:
    """Control for the malformed cases: the lines before each bad one replay to an event."""
    proc = vigil_replay(write(tmp_path, GOOD))
    assert proc.returncode == 0, proc.stderr
    assert brief(proc.stdout) == [BASELINE]


def test_empty_value_and_nan_are_invalid_samples_that_break_a_run(tmp_path: Path) -> None:
    spo2 = dict.fromkeys(range(2, 41), "91")
    spo2[10], spo2[20] = "", "nan"
    proc = vigil_replay(write(tmp_path, [*infusion_lines(), *seconds(2, 40, spo2)]))
    assert (proc.returncode, proc.stderr) == (0, "")
    # "Run semantics": runs of SpO2 < 92 from +2 (broken at +10), +11 (broken at +20), +21;
    # only the last lasts 15 s: DESAT at +36
    assert brief(proc.stdout) == [BASELINE, (36.0, "DESAT", "active")]
    desat = events(proc.stdout)[1]
    assert (desat["param"], desat["value"], desat["limit"]) == ("SPO2", 91.0, 92.0)


def test_invalid_samples_are_no_data(tmp_path: Path) -> None:
    spo2 = {off: ("" if off % 2 else "nan") for off in range(3, 41)}
    spo2[2] = "97"
    spo2[41] = "97"
    proc = vigil_replay(write(tmp_path, [*infusion_lines(), *seconds(2, 41, spo2)]))
    assert (proc.returncode, proc.stderr) == (0, "")
    # Reading 2: last valid SpO2 at +2, due at +32 (a row or tick there); cleared at the next
    # valid sample, +41. Priority medium in infusion, value = seconds without data.
    assert brief(proc.stdout) == [
        BASELINE,
        (32.0, "SPO2_NO_DATA", "active"),
        (41.0, "SPO2_NO_DATA", "cleared"),
    ]
    nd = events(proc.stdout)[1]
    assert (nd["priority"], nd["kind"], nd["value"]) == ("medium", "technical", 30.0)


# ---------------------------------------------------------------- --summary


def two_desaturations() -> list[str]:
    spo2 = {off: ("91" if 2 <= off <= 20 or 31 <= off <= 50 else "97") for off in range(2, 61)}
    return [*infusion_lines(), *seconds(2, 60, spo2)]


def test_two_desaturations_without_summary(tmp_path: Path) -> None:
    proc = vigil_replay(write(tmp_path, two_desaturations()))
    assert (proc.returncode, proc.stderr) == (0, "")
    # run from +2: active +17; back at 97 from +21: cleared +26; again +31 -> +46, +51 -> +56
    assert brief(proc.stdout) == [
        BASELINE,
        (17.0, "DESAT", "active"),
        (26.0, "DESAT", "cleared"),
        (46.0, "DESAT", "active"),
        (56.0, "DESAT", "cleared"),
    ]


def test_summary_counts_per_code_and_state_on_stderr(tmp_path: Path) -> None:
    proc = vigil_replay(write(tmp_path, two_desaturations()), "--summary")
    assert proc.returncode == 0, proc.stderr
    assert len(events(proc.stdout)) == 5  # the events still go to stdout
    counts: dict[str, int] = {}
    total = None
    for line in proc.stderr.splitlines():
        if m := re.fullmatch(
            r"\s*(\d+)\s+([A-Z0-9_]+)\s+(active|cleared|escalated|acknowledged)", line
        ):
            counts[f"{m[2]} {m[3]}"] = int(m[1])
        elif m := re.fullmatch(r"\s*(\d+)\s+events", line):
            total = int(m[1])
    assert counts == {"BASELINE_INCOMPLETE active": 1, "DESAT active": 2, "DESAT cleared": 2}
    assert total == 5


# ---------------------------------------------------------------- --config


def desat_delay_policy(tmp_path: Path, delay: str) -> Path:
    text = default_policy_path().read_text(encoding="utf-8")
    new, n = re.subn(
        r'(code = "DESAT"\n(?:[^\[].*\n)*?delay_s = )15\.0', rf"\g<1>{delay}", text, count=1
    )
    assert n == 1
    path = tmp_path / "policy.toml"
    path.write_text(new, encoding="utf-8")
    return path


def test_custom_policy_moves_the_alarm(tmp_path: Path) -> None:
    policy = desat_delay_policy(tmp_path, "30.0")
    # the custom policy differs from the shipped one in DESAT's delay only
    shipped, custom = load_policy(), load_policy(policy)
    assert [r.delay_s for r in custom.continuous if r.code == "DESAT"] == [30.0]
    assert custom.model_copy(update={"continuous": shipped.continuous}) == shipped

    rec = write(tmp_path, [*infusion_lines(), *seconds(2, 45, "91")])
    default = vigil_replay(rec)
    moved = vigil_replay(rec, "--config", policy)
    assert (default.returncode, moved.returncode) == (0, 0)
    # run of SpO2 < 92 from +2: +17 with 15 s, +32 with 30 s
    assert brief(default.stdout) == [BASELINE, (17.0, "DESAT", "active")]
    assert brief(moved.stdout) == [BASELINE, (32.0, "DESAT", "active")]


def test_bad_policy_is_refused_with_its_location(tmp_path: Path) -> None:
    policy = desat_delay_policy(tmp_path, "-5.0")
    rec = write(tmp_path, GOOD)
    proc = vigil_replay(rec, "--config", policy)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert str(policy) in proc.stderr
    assert re.search(r"continuous\[\d+\]\.delay_s", proc.stderr), proc.stderr


def test_missing_policy_file(tmp_path: Path) -> None:
    proc = vigil_replay(write(tmp_path, GOOD), "--config", tmp_path / "nope.toml")
    assert (proc.returncode, proc.stdout) == (1, "")
    assert str(tmp_path / "nope.toml") in proc.stderr
    assert "no such file" in proc.stderr.lower()


# ---------------------------------------------------------------- encodings


def test_a_file_that_is_not_utf8_is_refused_at_its_line(tmp_path: Path) -> None:
    # a Latin-1 editor's note on line 5: "é" is the single byte 0xe9, not UTF-8
    path = tmp_path / "latin1.csv"
    path.write_bytes("\n".join([*GOOD, f"{T0 + 3},HR,70 é"]).encode("latin-1") + b"\n")
    proc = vigil_replay(path)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert f"{path}:5:" in proc.stderr, proc.stderr
    assert "UTF-8" in proc.stderr
    assert "0xe9" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    # what Excel writes for "CSV UTF-8", with Windows line ends
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(GOOD).encode("utf-8") + b"\r\n")
    proc = vigil_replay(path)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert brief(proc.stdout) == [BASELINE]
