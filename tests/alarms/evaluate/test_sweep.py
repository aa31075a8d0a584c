"""Sweep targets and values: which field of which rule each variant changes, and refusals."""

from __future__ import annotations

import pytest

from alarms.evaluate.sweep import SweepError, parse_sweep
from alarms.policy import DeterminationRule, Policy, load_policy


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy()


def _det(p: Policy, code: str) -> DeterminationRule:
    return next(r for r in p.determination if r.code == code)


def test_a_range_includes_its_end(policy: Policy) -> None:
    sw = parse_sweep("BP_HIGH.dia=100:120:5", policy)
    assert sw.values == (100.0, 105.0, 110.0, 115.0, 120.0)
    assert [_det(v, "BP_HIGH").when[0].dia for v in sw.policies] == list(sw.values)
    # nothing else moves: the SYS limit and the other rules stay as they were
    assert {_det(v, "BP_HIGH").when[0].sys for v in sw.policies} == {180.0}
    assert all(v.continuous == policy.continuous for v in sw.policies)
    assert parse_sweep("BP_HIGH.dia=100:112:5", policy).values == (100.0, 105.0, 110.0)
    # float steps land on the decimal values, not on 0.30000000000000004
    band = parse_sweep("DISCHARGE_NOT_READY.band=0.1:0.3:0.1", policy)
    assert band.values == (0.1, 0.2, 0.3)
    assert [v.discharge.band for v in band.policies if v.discharge] == [0.1, 0.2, 0.3]


def test_every_clause_or_one_clause(policy: Policy) -> None:
    every = parse_sweep("BP_CRISIS.sys=190,210", policy).policies[0]
    assert [c.sys for c in _det(every, "BP_CRISIS").when] == [190.0, 190.0]
    one = parse_sweep("BP_CRISIS.when[1].sys=210", policy).policies[0]
    assert [c.sys for c in _det(one, "BP_CRISIS").when] == [180.0, 210.0]
    assert parse_sweep("BP_CRISIS.when[1].sys=210", policy).target == "BP_CRISIS.when[1].sys"


def test_other_rule_kinds(policy: Policy) -> None:
    tachy = parse_sweep("TACHY.delay_s=10:30:10", policy).policies[2]
    assert next(r for r in tachy.continuous if r.code == "TACHY").delay_s == 30.0
    overdue = parse_sweep("NIBP_OVERDUE.infusion_s=600", policy).policies[0]
    assert overdue.nibp_overdue is not None
    assert overdue.nibp_overdue.infusion_s == 600.0
    base = parse_sweep("BASELINE_INCOMPLETE.min_determinations=1:3:1", policy).policies
    assert [b.baseline.min_determinations for b in base] == [1, 2, 3]
    assert parse_sweep("general.run_gap_s=3", policy).policies[0].general.run_gap_s == 3.0
    nodata = parse_sweep("SPO2_NO_DATA.after_s=60", policy).policies[0]
    assert nodata.no_data[0].after_s == 60.0


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("BP_HIGH.dia", "expected CODE.field=a:b:step"),
        ("BP_HIGH.dia=120:100:5", "need a <= b and a step > 0"),
        ("BP_HIGH.dia=1:2:x", "expected a:b:step or a comma list"),
        ("NOPE.limit=1", "no rule with code NOPE"),
        ("TACHY.color=1", "TACHY has no numeric field 'color'"),
        ("BP_RISE.dia=1.2", "no clause of BP_RISE sets 'dia'"),
        ("BP_HIGH.when[3].dia=100", "BP_HIGH has 1 clause(s): when[3] does not exist"),
        ("BP_HIGH.dia=5", "Input should be greater than or equal to 10"),
        ("BASELINE_INCOMPLETE.min_determinations=1.5", "is a whole number"),
        # a medium DESAT below the high DESAT_SEVERE's limit contradicts the priorities
        ("DESAT.limit=80", "a milder limit than DESAT"),
        ("TACHY.when[0].limit=1", "TACHY has no clauses"),
    ],
)
def test_refusals_say_why(policy: Policy, text: str, reason: str) -> None:
    with pytest.raises(SweepError) as err:
        parse_sweep(text, policy)
    assert reason in str(err.value)
