"""Each benchmark of bench/ runs to its end at a tiny size, and its own checks hold.

The figures are not asserted (they depend on the machine); what is asserted is what each
bench checks itself and prints: the engine and the plain loop give identical events, the
evaluate runs agree whatever the workers, every device decodes, the alarm path and the outbox
burst complete. A bench that stops working (bench/latency.py once did, unnoticed) fails here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from drivers.registry import SPECS

REPO = Path(__file__).resolve().parents[2]


def _bench(script: str, *args: str, timeout: float) -> str:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.timeout(120)
def test_replay_bench_finds_the_engine_and_the_plain_loop_identical() -> None:
    out = _bench("replay.py", "--hours", "1", "--sessions", "2", "--repeats", "2", timeout=100)
    assert out.count("identical: True") == 2, out
    assert "ratio engine/plain" in out


@pytest.mark.timeout(60)
def test_decode_bench_decodes_every_device_with_a_simulator() -> None:
    out = _bench("decode.py", "--hours", "0.05", "--repeat", "1", timeout=50)
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:] if line.strip()}
    kinds = {s.kind for s in SPECS if s.link is not None and s.simulator is not None}
    assert set(rows) == kinds, out
    for kind, cells in rows.items():
        assert int(cells[3].replace(",", "")) > 0, f"{kind} decoded no samples:\n{out}"


@pytest.mark.timeout(60)
def test_evaluate_bench_runs_agree_whatever_the_workers() -> None:
    out = _bench("evaluate.py", "--sessions", "4", "--jobs", "1", "2", timeout=50)
    assert "the runs agree" in out, out


@pytest.mark.timeout(60)
def test_hl7_gateway_bench_delivers_its_burst_and_its_reports() -> None:
    out = _bench("hl7_gateway.py", "--beds", "2", "--alarms", "10", "--vitals-s", "2", timeout=50)
    assert "burst: 10 PCD-04 over 2 beds" in out, out
    assert "steady: 2 beds" in out, out


@pytest.mark.timeout(90)
def test_latency_bench_measures_the_alarm_path_and_the_outbox_burst() -> None:
    out = _bench("latency.py", "--trials", "5", timeout=80)
    assert "alarm path bedside -> console, active n=5" in out, out
    assert "clear path bedside -> console, cleared n=5" in out, out
    assert "daemon exit status after SIGTERM: 0" in out, out
    assert "all at the subscriber" in out, out
