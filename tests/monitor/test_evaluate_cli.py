"""`vigil evaluate` end to end: identical results whatever the parallelism (in process, local
processes, a Dask LocalCluster of worker processes), sweeps, the report in a real browser, and
usage errors."""

from __future__ import annotations

import json
import multiprocessing.resource_tracker
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.image import imread

from monitor.cli import main
from simulators.cohort import CohortParams, simulate_cohort

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 short sessions, two per file, with a large BP rise so that BP alarms fire."""
    out = tmp_path_factory.mktemp("cohort")
    params = CohortParams.model_validate(
        {
            "post_s": 1800,
            "session_spacing_s": 6000,
            "sys_rise": {"mean": 45.0, "sd": 15.0},
            "dia_rise": {"mean": 25.0, "sd": 10.0},
            "desat_per_h": 1.0,
        }
    )
    simulate_cohort(params, sessions=8, seed=4, out=out, per_file=2)
    return out


@pytest.fixture
def resource_tracker() -> Iterator[None]:
    """Stop multiprocessing's resource tracker after the test.

    Starting processes with `spawn` (the local pool, Dask's nannies) starts one tracker process
    per parent, kept until that parent exits: a `vigil evaluate` run ends with its process, but
    pytest's process lives on, and the leak check would count the tracker as the test's.
    """
    yield
    getattr(multiprocessing.resource_tracker, "_resource_tracker")._stop()  # noqa: B009


def _evaluate(out: Path, *argv: str) -> int:
    return main(["evaluate", *argv, "--out", str(out)])


def _stable(doc: dict[str, Any]) -> dict[str, Any]:
    """The document without what depends on how it was run."""
    return {k: v for k, v in doc.items() if k not in {"run", "command"}}


@pytest.mark.usefixtures("resource_tracker")
def test_results_are_identical_whatever_the_parallelism(
    cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from distributed import LocalCluster  # noqa: PLC0415 - the evaluate extra

    assert _evaluate(tmp_path / "j1" / "r.html", str(cohort), "--jobs", "1") == 0
    assert _evaluate(tmp_path / "j2" / "r.html", str(cohort), "--jobs", "2") == 0
    with LocalCluster(  # type: ignore[no-untyped-call]
        processes=True,
        n_workers=2,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address=None,
        worker_dashboard_address=None,
    ) as cluster:
        address = cluster.scheduler_address
        assert _evaluate(tmp_path / "dask" / "r.html", str(cohort), "--scheduler", address) == 0
    docs = [json.loads((tmp_path / d / "r.json").read_text()) for d in ("j1", "j2", "dask")]
    assert _stable(docs[0]) == _stable(docs[1]) == _stable(docs[2])
    csvs = [(tmp_path / d / "r.csv").read_bytes() for d in ("j1", "j2", "dask")]
    assert csvs[0] == csvs[1] == csvs[2]
    assert docs[2]["run"]["scheduler"] == address
    assert (docs[0]["run"]["jobs"], docs[1]["run"]["jobs"]) == (1, 2)
    # the cohort is what it was drawn to be: 8 sessions, all discharged, alarms raised
    first = docs[0]
    assert (first["sessions"], first["discharged"], first["recordings"]) == (8, 8, 4)
    # sessions 6000 s apart from 2026-01-01, the last one 5100 s long
    assert (first["first_start"], first["last_end"]) == (
        "2026-01-01T00:00:00.000+00:00",
        "2026-01-01T13:05:00.000+00:00",
    )
    anyr = next(r for r in first["burden"] if r["name"] == "any" and r["scope"] == "session")
    assert anyr["with_alarm"] > 0
    # every BP_HIGH activation names the reading that crossed
    bp_high = next(r for r in first["burden"] if r["name"] == "BP_HIGH" and r["scope"] == "session")
    crossed = first["crossed"]["BP_HIGH"]
    assert set(crossed) <= {"NIBP_SYS", "NIBP_DIA"}
    assert sum(crossed.values()) == round(bp_high["mean"] * 8) > 0
    # one row per session, in order, to find the sessions behind a figure
    rows = (tmp_path / "j1" / "r.sessions.csv").read_text().splitlines()
    head = rows[0].split(",")
    assert head[:7] == [
        "file",
        "session",
        "start",
        "minutes",
        "infused",
        "discharged",
        "activations",
    ]
    assert head[7:9] == ["BP_PRE_GATE", "BP_HIGH"]  # the policy's codes, in its order
    assert [r.split(",")[1] for r in rows[1:]] == ["0", "1"] * 4
    assert rows[1].split(",")[2] == "2026-01-01T00:00:00.000+00:00"
    per_session = [int(r.split(",")[6]) for r in rows[1:]]
    assert sum(per_session) == round(anyr["mean"] * 8)
    assert sum(int(r.split(",")[8]) for r in rows[1:]) == sum(crossed.values())
    out = capsys.readouterr().out
    assert "8 sessions in 4 recordings" in out


def _burden(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in doc["burden"] if r["name"] == name and r["scope"] == "session")


def test_a_sweep_replays_once_per_value(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    assert (
        _evaluate(
            out,
            str(cohort),
            "--jobs",
            "1",
            "--sweep",
            "BP_HIGH.dia=100:120:10",
            "--sweep",
            "DESAT.delay_s=5,60",
            "--sweep",
            "general.run_gap_s=2,5",
        )
        == 0
    )
    doc = json.loads(out.with_suffix(".json").read_text())
    dia, delay, gap = doc["sweeps"]
    # a shared constant is drawn against every alarm's burden
    assert (gap["target"], gap["code"]) == ("general.run_gap_s", "any")
    assert [p["detection"] for p in gap["points"]] == [None, None]
    assert [p["value"] for p in dia["points"]] == [100.0, 110.0, 120.0]
    assert (dia["target"], dia["code"]) == ("BP_HIGH.dia", "BP_HIGH")
    shares = [
        next(r for r in p["burden"] if r["name"] == "BP_HIGH")["with_alarm"] for p in dia["points"]
    ]
    # a higher limit never raises more sessions' alarms; 110 is the policy's own value
    assert shares[0] >= shares[1] >= shares[2]
    assert shares[1] == _burden(doc, "BP_HIGH")["with_alarm"]
    assert shares[0] > shares[2]
    # the cohort's annotations give the sensitivity of each variant
    assert dia["points"][0]["detection"]["events"] > 0
    delays = [next(r for r in p["burden"] if r["name"] == "DESAT") for p in delay["points"]]
    assert delays[0]["mean"] >= delays[1]["mean"]
    # the variant at 120 is the policy file with 120 in it, evaluated on its own
    shipped = Path(__file__).resolve().parents[2] / "config" / "alarms.toml"
    text = shipped.read_text(encoding="utf-8")
    old = "when = [{ consecutive = 1, sys = 180.0, dia = 110.0 }]"
    assert text.count(old) == 1
    policy = tmp_path / "dia120.toml"
    policy.write_text(text.replace(old, old.replace("110.0", "120.0")), encoding="utf-8")
    other = tmp_path / "dia120" / "r.html"
    assert _evaluate(other, str(cohort), "--jobs", "1", "--config", str(policy)) == 0
    alone = json.loads(other.with_suffix(".json").read_text())
    at_120 = next(r for r in dia["points"][2]["burden"] if r["name"] == "BP_HIGH")
    assert _burden(alone, "BP_HIGH") == at_120
    assert _burden(alone, "any") == next(
        r for r in dia["points"][2]["burden"] if r["name"] == "any"
    )
    rows = out.with_suffix(".sweep.csv").read_text().splitlines()
    assert rows[0].startswith("sweep,target,value,group,name,scope,sessions,with_alarm,share")
    assert sum(1 for r in rows if ",BP_HIGH.dia,120.0,code,BP_HIGH," in r) == 1
    assert out.read_text().count('alt="sweep ') == 3


def test_the_report_renders_in_a_browser(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert _evaluate(out, str(cohort), "--jobs", "1", "--sweep", "BP_HIGH.dia=100:120:10") == 0
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1100,1400",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            out.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    img = imread(str(shot))[..., :3]
    assert img.shape[:2] == (1400, 1100)
    non_white = np.any(img < 0.9, axis=2)
    assert non_white.mean() > 0.03  # text, tables and the first chart
    # the burden chart's bars: priority colours (medium amber) are on the page
    amber = (img[..., 0] > 0.9) & (img[..., 1] > 0.6) & (img[..., 1] < 0.75) & (img[..., 2] < 0.3)
    assert amber.sum() > 500
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def test_usage_errors(cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.html"
    assert _evaluate(out, str(tmp_path / "nothing")) == 2
    assert "nothing: no such file or folder" in capsys.readouterr().err
    assert _evaluate(out, str(tmp_path)) == 2
    assert "no recordings" in capsys.readouterr().err
    assert _evaluate(out, str(cohort), "--sweep", "BP_HIGH.dia=5") == 2
    assert "--sweep BP_HIGH.dia=5: Input should be greater than or equal to 10" in (
        capsys.readouterr().err
    )
    assert _evaluate(tmp_path / "r.png", str(cohort)) == 2
    assert "the report is HTML" in capsys.readouterr().err
    assert _evaluate(out, str(cohort), "--scheduler", "foo://bar") == 2
    assert "--scheduler foo://bar: unknown address scheme 'foo'" in capsys.readouterr().err
    raw = tmp_path / "raw.csv"
    raw.write_text("t,param,value\n1,HR,70\n2,HR,71\n", encoding="utf-8")
    assert _evaluate(out, str(raw)) == 1
    assert "no session in 1 recording(s): a session opens at an EVENT,session_start row" in (
        capsys.readouterr().err
    )
    bad = tmp_path / "bad.csv"
    bad.write_text("t,param,value\n1,HR,70\n0,HR,70\n", encoding="utf-8")
    assert _evaluate(out, str(bad)) == 1
    err = capsys.readouterr().err
    assert err == f"vigil evaluate: {bad}:3: time 0.0 is earlier than the row before it\n"
    assert not out.exists()


def evaluate_argv(*args: str) -> list[str]:
    """The command line of `vigil evaluate ARGS` run by this interpreter."""
    return [sys.executable, "-m", "monitor.cli", "evaluate", *args]


def read_rest(fd: int) -> bytes:
    """What a pty's main side `fd` still has to read, until half a second of quiet."""
    seen = b""
    while select.select([fd], [], [], 0.5)[0]:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the terminal's other end is closed: all read
            break
        if not chunk:
            break
        seen += chunk
    return seen


def test_progress_is_shown_on_a_terminal_only(cohort: Path, tmp_path: Path) -> None:
    main_fd, term_fd = pty.openpty()
    try:
        proc = subprocess.run(
            evaluate_argv(str(cohort), "--jobs", "1", "--out", str(tmp_path / "t" / "r.html")),
            stdout=subprocess.PIPE,
            stderr=term_fd,
            check=True,
            timeout=60,
        )
        os.close(term_fd)
        seen = read_rest(main_fd)
    finally:
        os.close(main_fd)
    assert b"\rvigil evaluate: 4/4 recordings replayed (" in seen
    assert b"8 sessions in 4 recordings" in proc.stdout
    # not a terminal: no progress
    piped = subprocess.run(
        evaluate_argv(str(cohort), "--jobs", "1", "--out", str(tmp_path / "p" / "r.html")),
        capture_output=True,
        check=True,
        timeout=60,
    )
    assert piped.stderr == b""


def test_ctrl_c_stops_the_workers_and_writes_nothing(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    main_fd, term_fd = pty.openpty()
    proc = subprocess.Popen(  # a long sweep: 60 variants of 4 recordings
        evaluate_argv(
            str(cohort), "--jobs", "2", "--sweep", "TACHY.delay_s=1:60:1", "--out", str(out)
        ),
        stdout=subprocess.PIPE,
        stderr=term_fd,
        start_new_session=True,
    )
    os.close(term_fd)
    seen = b""
    try:
        while b"recordings replayed" not in seen:
            assert select.select([main_fd], [], [], 30)[0], seen
            seen += os.read(main_fd, 4096)
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole group
        proc.communicate(timeout=30)
        seen += read_rest(main_fd)
    finally:
        os.close(main_fd)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    text = seen.decode()
    assert text.endswith("vigil evaluate: interrupted: nothing written\r\n"), text
    assert "Traceback" not in text
    assert not out.exists()
    assert not out.with_suffix(".json").exists()
