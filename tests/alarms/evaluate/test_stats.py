"""The burden statistics against values worked out by hand on a tiny cohort."""

from __future__ import annotations

import pytest

from alarms.evaluate.sessions import Activation, SessionResult, TrueEvent
from alarms.evaluate.stats import BurdenRow, burden, detection, wilson
from kernel.vocabulary import Phase, Priority

H, M, L = Priority.HIGH, Priority.MEDIUM, Priority.LOW
PRE, INF, POST = Phase.PRE, Phase.INFUSION, Phase.POST


def _session(
    index: int,
    acts: list[Activation],
    *,
    end: float = 10000.0,
    infused: bool = True,
    truth: tuple[TrueEvent, ...] = (),
) -> SessionResult:
    return SessionResult(
        file="f.csv",
        index=index,
        start=0.0,
        infusion_start=600.0 if infused else None,
        infusion_stop=3000.0 if infused else None,
        end=end,
        discharged=True,
        activations=tuple(acts),
        true_events=truth,
    )


# A: two BP_HIGH (one in infusion, one in post), a BP_RISE overlapping the first, and a
#    DESAT_CRITICAL raised in pre that never clears; B: nothing; C: a TACHY across the infusion
#    stop; D: stopped in pre after 500 s, one low SPO2_NO_DATA.
A = _session(
    0,
    [
        Activation("DESAT_CRITICAL", H, PRE, 100.0, 10000.0, cleared=False),
        Activation("BP_HIGH", M, INF, 2000.0, 2300.0, cleared=True),
        Activation("BP_RISE", M, INF, 2100.0, 2400.0, cleared=True),
        Activation("BP_HIGH", M, POST, 3500.0, 3800.0, cleared=True),
    ],
    truth=(TrueEvent(1950.0, "BP_HIGH"), TrueEvent(5000.0, "DESAT")),
)
B = _session(1, [])
C = _session(
    2,
    [Activation("TACHY", M, INF, 2900.0, 3100.0, cleared=True)],
    truth=(TrueEvent(2890.0, "TACHY"), TrueEvent(2950.0, "TACHY")),
)
D = _session(
    3, [Activation("SPO2_NO_DATA", L, PRE, 100.0, 200.0, cleared=True)], end=500.0, infused=False
)
COHORT = [A, B, C, D]
CODES = ["BP_HIGH", "BP_RISE", "TACHY", "DESAT_CRITICAL", "SPO2_NO_DATA"]
# time in scope: 3 sessions of 10000 s and one of 500 s; pre 3 x 600 + 500; infusion 3 x 2400;
# post 3 x 7000
SESSION_S, PRE_S, INF_S, POST_S = 30500.0, 2300.0, 7200.0, 21000.0


def _row(rows: list[BurdenRow], name: str, scope: str) -> BurdenRow:
    return next(r for r in rows if r.name == name and r.scope == scope)


def test_wilson_matches_the_published_interval() -> None:
    # 1 of 4: centre (0.25 + z^2/8) / (1 + z^2/4) = 0.372472, half-width 0.326885
    lo, hi = wilson(1, 4)
    assert lo == pytest.approx(0.045587, abs=2e-6)
    assert hi == pytest.approx(0.699358, abs=2e-6)
    # 0 of 4: the upper edge is z^2 / (n + z^2) = 3.841459 / 7.841459
    assert wilson(0, 4) == pytest.approx((0.0, 0.489891), abs=2e-6)
    # 4 of 4 mirrors it
    assert wilson(4, 4) == pytest.approx((0.510109, 1.0), abs=2e-6)
    # 12 of 100: centre 0.1392073 / 1.0384146 = 0.134058, half-width 1.887458 * 0.0339417
    assert wilson(12, 100) == pytest.approx((0.069994, 0.198122), abs=2e-6)
    assert wilson(0, 0) == (0.0, 1.0)


def test_a_code_over_whole_sessions() -> None:
    r = _row(burden(COHORT, CODES), "BP_HIGH", "session")
    assert (r.sessions, r.with_alarm, r.share) == (4, 1, 0.25)
    assert (r.share_low, r.share_high) == pytest.approx((0.045587, 0.699358), abs=2e-6)
    # per session 2, 0, 0, 0: mean 0.5, median 0; p90 at rank 0.9 * 3 = 2.7 of [0, 0, 0, 2]
    # is 0 + 0.7 * (2 - 0) = 1.4
    assert (r.mean, r.median, r.p90, r.max) == pytest.approx((0.5, 0.0, 1.4, 2))
    # 300 s + 300 s in A
    assert r.time_mean_s == pytest.approx(150.0)
    assert r.time_share == pytest.approx(600.0 / SESSION_S)


def test_phases_count_where_raised_and_split_the_time() -> None:
    rows = burden(COHORT, CODES)
    # D never reached the infusion: 3 sessions in scope
    inf = _row(rows, "TACHY", "infusion")
    assert (inf.sessions, inf.with_alarm, inf.max) == (3, 1, 1)
    assert inf.mean == pytest.approx(1 / 3)
    assert inf.time_share == pytest.approx(100.0 / INF_S)  # 2900 -> 3000
    post = _row(rows, "TACHY", "post")
    # raised in infusion, so no activation in post, but 100 s of its time is there
    assert (post.sessions, post.with_alarm, post.max) == (3, 0, 0)
    assert post.time_mean_s == pytest.approx(100.0 / 3)
    pre = _row(rows, "DESAT_CRITICAL", "pre")
    assert (pre.sessions, pre.with_alarm) == (4, 1)
    assert pre.time_share == pytest.approx(500.0 / PRE_S)  # 100 -> 600
    assert _row(rows, "DESAT_CRITICAL", "post").time_share == pytest.approx(7000.0 / POST_S)
    assert _row(rows, "SPO2_NO_DATA", "pre").time_mean_s == pytest.approx(25.0)  # 100 s / 4


def test_priorities_and_any_count_overlaps_once() -> None:
    rows = burden(COHORT, CODES)
    med = _row(rows, "medium", "session")
    # A has 3 medium activations, C one; BP_HIGH [2000, 2300) and BP_RISE [2100, 2400) overlap:
    # A is in a medium alarm for 400 + 300 s, C for 200 s
    assert (med.with_alarm, med.max, med.mean) == (2, 3, 1.0)
    assert med.time_mean_s == pytest.approx((700.0 + 200.0) / 4)
    anyr = _row(rows, "any", "session")
    assert (anyr.with_alarm, anyr.max) == (3, 4)
    # A: DESAT_CRITICAL covers 100 -> 10000, so everything else in A adds nothing
    assert anyr.time_mean_s == pytest.approx((9900.0 + 200.0 + 100.0) / 4)
    assert _row(rows, "high", "session").with_alarm == 1
    assert _row(rows, "low", "pre").with_alarm == 1


def test_every_code_is_listed_in_order_even_without_activations() -> None:
    rows = burden([B], ["BP_HIGH", "TACHY"])
    names = [r.name for r in rows if r.scope == "session"]
    assert names == ["any", "high", "medium", "low", "BP_HIGH", "TACHY"]
    assert all(
        r.with_alarm == 0 and r.share_high == pytest.approx(0.793, abs=1e-3)
        for r in rows
        if r.scope == "session"
    )  # 0 of 1: z^2 / (1 + z^2)


def test_detection_sensitivity_and_time_to_alarm() -> None:
    det = {d.code: d for d in detection(COHORT, 600.0)}
    assert (det["BP_HIGH"].events, det["BP_HIGH"].detected, det["BP_HIGH"].delay_max_s) == (
        1,
        1,
        50.0,
    )
    # 2890: raised 10 s later; 2950: already active, 0 s
    assert (det["TACHY"].detected, det["TACHY"].delay_median_s) == (2, 5.0)
    assert det["TACHY"].delay_max_s == 10.0
    assert (det["DESAT"].events, det["DESAT"].detected, det["DESAT"].sensitivity) == (1, 0, 0.0)
    assert det["DESAT"].delay_median_s is None
    assert (det["DESAT"].sensitivity_low, det["DESAT"].sensitivity_high) == pytest.approx(
        (
            0.0,
            0.793,
        ),
        abs=1e-3,
    )
    # a window too short for the BP_HIGH 50 s later
    assert {d.code: d.detected for d in detection(COHORT, 30.0)}["BP_HIGH"] == 0
