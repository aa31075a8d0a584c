"""`vigil simulate cohort`: the drawn distributions against their parameters, determinism, the
files (readable by the replay reader) and the parameter overrides."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from alarms.engine import Rows
from alarms.evaluate.sessions import read_rows
from kernel.configfile import ConfigError
from kernel.vocabulary import Param, SessionEvent
from monitor.cli import build_parser
from simulators.cli import simulate_main
from simulators.cohort import (
    CohortParams,
    cuff_offsets,
    load_params,
    simulate_cohort,
    simulate_session,
)

# a shorter observation keeps the test fast; the distributions do not depend on it
SHORT = {"post_s": 1800, "session_spacing_s": 6000}


def _cohort(n: int, **changes: object) -> tuple[CohortParams, list[dict[str, np.ndarray]]]:
    p = CohortParams.model_validate(SHORT | changes)
    out = []
    for i in range(n):
        s = simulate_session(p, 7, i)
        out.append({"t": s.t - s.t[0], "code": s.code, "value": s.value})
    return p, out


def _column(s: dict[str, np.ndarray], code: int) -> tuple[np.ndarray, np.ndarray]:
    m = s["code"] == code
    return s["t"][m], s["value"][m]


def test_baselines_and_the_rise_follow_their_parameters() -> None:
    n = 300
    p, sessions = _cohort(n, cuff_failure_p=0.0)
    cuffs = cuff_offsets(p)
    at_40 = int(np.flatnonzero(cuffs == p.pre_s + 2400 - p.cuff_lead_s)[0])
    sys0, dia0, d_sys, d_dia, hr0 = [], [], [], [], []
    for s in sessions:
        _, sys_ = _column(s, 3)
        _, dia = _column(s, 4)
        t_hr, hr = _column(s, 0)
        sys0.append(sys_[:2].mean())
        dia0.append(dia[:2].mean())
        d_sys.append(sys_[at_40] - sys_[:2].mean())
        d_dia.append(dia[at_40] - dia[:2].mean())
        window = (t_hr >= p.pre_s - 300) & (t_hr < p.pre_s)
        hr0.append(np.nanmean(hr[window]))
    # the cuff error (sd 4) adds to what the cuff sees: sd of a 2-reading mean and of a change
    cuff = p.cuff_sd
    for got, mean, sd in (
        (sys0, 125.0, math.hypot(14.0, cuff / math.sqrt(2))),
        (dia0, 78.0, math.hypot(9.0, cuff / math.sqrt(2))),
        (d_sys, 16.0, math.sqrt(11.2**2 + 1.5 * cuff**2)),
        (d_dia, 11.0, math.sqrt(8.45**2 + 1.5 * cuff**2)),
    ):
        arr = np.asarray(got)
        assert abs(arr.mean() - mean) < 4 * sd / math.sqrt(n), (arr.mean(), mean)
        assert abs(arr.std(ddof=1) / sd - 1) < 0.15, (arr.std(ddof=1), sd)
    assert abs(np.mean(hr0) - 72.0) < 4 * 11.0 / math.sqrt(n)
    # SYS and DIA rises are correlated (0.7 for the rise; the cuff noise dilutes it)
    assert 0.45 < np.corrcoef(d_sys, d_dia)[0, 1] < 0.8


def test_failures_and_dropouts_happen_at_their_rates() -> None:
    n = 200
    _, sessions = _cohort(n, cuff_failure_p=0.1, probe_off_per_h=2.0, probe_off_mean_s=30.0)
    dets = np.concatenate([_column(s, 3)[1] for s in sessions])
    failed = np.isnan(dets).mean()
    assert abs(failed - 0.1) < 4 * math.sqrt(0.1 * 0.9 / len(dets))
    spo2 = np.concatenate([_column(s, 2)[1] for s in sessions])
    # about rate x mean length of every hour is off (episodes rarely overlap at this rate)
    expected = 2.0 * 30.0 / 3600.0
    assert abs(np.isnan(spo2).mean() / expected - 1) < 0.2


def _code(what: Param | SessionEvent) -> int:
    return int(Rows.of([(0.0, what, math.nan, True)]).what[0])


def test_the_timeline_is_the_protocols(tmp_path: Path) -> None:
    (path,) = simulate_cohort(CohortParams(), sessions=1, seed=3, out=tmp_path)
    rows = read_rows(path)  # the reader vigil evaluate uses
    t = rows.t - rows.t[0]
    steps = {e: t[rows.what == _code(e)].tolist() for e in SessionEvent}
    assert steps == {
        SessionEvent.SESSION_START: [0],
        SessionEvent.INFUSION_START: [600],
        SessionEvent.INFUSION_STOP: [3000],
        SessionEvent.DISCHARGE: [10500],
    }
    cuffs = t[rows.what == _code(Param.NIBP_SYS)].tolist()
    assert cuffs == [60, 360, *range(870, 3000, 300), *range(3870, 10200, 900)]
    hr = t[rows.what == _code(Param.HR)].tolist()
    assert hr == list(range(10500))  # 1 Hz, no gap (a leads-off episode leaves empty values)
    # at one second: the step first, then HR, PR, SPO2
    assert rows.what[:4].tolist() == [
        _code(SessionEvent.SESSION_START),
        _code(Param.HR),
        _code(Param.PR),
        _code(Param.SPO2),
    ]


def test_a_seed_draws_the_same_cohort_whatever_the_packing(tmp_path: Path) -> None:
    p = CohortParams.model_validate(SHORT)
    one = simulate_cohort(p, sessions=4, seed=11, out=tmp_path / "a")
    again = simulate_cohort(p, sessions=4, seed=11, out=tmp_path / "b")
    packed = simulate_cohort(p, sessions=6, seed=11, out=tmp_path / "c", per_file=4)
    other = simulate_cohort(p, sessions=4, seed=12, out=tmp_path / "d")
    assert [f.read_bytes() for f in one] == [f.read_bytes() for f in again]
    assert one[0].read_bytes() != other[0].read_bytes()
    header = b"t,param,value\n"
    joined = header + b"".join(f.read_bytes().removeprefix(header) for f in one)
    assert packed[0].read_bytes() == joined  # sessions 1-4 of a 6-session cohort
    assert len(packed) == 2


def test_parameters_from_toml_and_overrides(tmp_path: Path) -> None:
    toml = tmp_path / "p.toml"
    toml.write_text("cuff_sd = 2.5\n[sys_rise]\nmean = 3.3\n", encoding="utf-8")
    p = load_params(toml, ["dia_rise.mean=3.2", "pre_cuff_s=[60, 300, 540]"])
    assert (p.cuff_sd, p.sys_rise.mean, p.sys_rise.sd) == (2.5, 3.3, 11.2)  # sd kept
    assert (p.dia_rise.mean, p.pre_cuff_s) == (3.2, (60, 300, 540))
    with pytest.raises(ConfigError, match=r"--set: sys_rise\.mea: unknown key"):
        load_params(None, ["sys_rise.mea=3"])
    with pytest.raises(ConfigError, match="pre_cuff_s offsets must lie inside pre"):
        load_params(None, ["pre_cuff_s=[60, 900]"])


def test_the_command_writes_a_manifest_that_draws_it_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def run(*argv: str) -> int:
        return simulate_main(build_parser().parse_args(["simulate", "cohort", *argv]))

    def drawn(sessions: int, out: str, *more: str) -> int:
        """`vigil simulate cohort` of `sessions` sessions, seed 5, into `tmp_path / out`."""
        return run("--sessions", str(sessions), "--seed", "5", "--out", str(tmp_path / out), *more)

    assert drawn(2, "a", "--set", "post_s=1800", "--set", "session_spacing_s=6000") == 0
    assert "2 sessions (seed 5) in 2 files" in capsys.readouterr().err
    manifest = tmp_path / "a" / "cohort.toml"
    assert drawn(2, "b", "--params", str(manifest)) == 0
    for name in ("session-00001.csv", "session-00002.csv", "session-00002.events.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    # a discharge drawn between 5 and 20 min after the 2-h check
    spaced = ("--set", "discharge_delay_max_s=1200", "--set", "session_spacing_s=12000")
    assert drawn(3, "c", *spaced) == 0
    again = tmp_path / "c" / "cohort.toml"
    assert drawn(3, "d", "--params", str(again)) == 0
    ends = []
    for i in (1, 2, 3):
        rows = (tmp_path / "c" / f"session-0000{i}.csv").read_text().splitlines()
        first, last = int(rows[1].split(",")[0]), rows[-1].split(",")
        assert last[1:] == ["EVENT", "discharge"]
        ends.append(int(last[0]) - first - 10200)
        assert (tmp_path / "d" / f"session-0000{i}.csv").read_bytes() == (
            tmp_path / "c" / f"session-0000{i}.csv"
        ).read_bytes()
    assert all(300 <= e <= 1200 for e in ends)
    assert len(set(ends)) > 1
    assert run("--sessions", "2") == 2
    assert "give --sessions N and --out DIR" in capsys.readouterr().err
    assert run("--sessions", "2", "--out", str(tmp_path), "--set", "cuff_sd=-1") == 2
    assert "cuff_sd: Input should be greater than or equal to 0" in capsys.readouterr().err
