"""The policy as data: the shipped `config/alarms.toml` is docs/ALARMS.md's table, and a policy
that makes no sense is refused with the file, the dotted key and the reason.

The expected table below is copied from docs/ALARMS.md ("Table", "Precise reading"), not from
the TOML file.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest

from alarms.policy import Policy, load_policy
from kernel.configfile import ConfigError, ConfigProblem
from kernel.paths import default_policy_path
from kernel.vocabulary import AlarmKind, Param, Phase, Priority

ALL = frozenset({Phase.NONE, Phase.PRE, Phase.INFUSION, Phase.POST})
INF_POST = frozenset({Phase.INFUSION, Phase.POST})
SESSION = frozenset({Phase.PRE, Phase.INFUSION, Phase.POST})


class Cont(NamedTuple):
    """One continuous row of docs/ALARMS.md's table."""

    priority: Priority
    signal: str
    op: str
    limit: float
    delay_s: float
    latching: bool
    phases: frozenset[Phase]


# docs/ALARMS.md "Table": TACHY ... DESAT_CRITICAL (all physiological).
CONTINUOUS: dict[str, Cont] = {
    "TACHY": Cont(Priority.MEDIUM, "HRE", ">=", 120, 20, False, INF_POST),
    "TACHY_SEVERE": Cont(Priority.HIGH, "HRE", ">=", 140, 10, True, ALL),
    "BRADY": Cont(Priority.MEDIUM, "HRE", "<=", 45, 20, False, ALL),
    "BRADY_SEVERE": Cont(Priority.HIGH, "HRE", "<=", 40, 10, True, ALL),
    "DESAT": Cont(Priority.MEDIUM, "SPO2", "<", 92, 15, False, INF_POST),
    "DESAT_SEVERE": Cont(Priority.HIGH, "SPO2", "<", 88, 10, True, INF_POST),
    "DESAT_CRITICAL": Cont(Priority.HIGH, "SPO2", "<", 85, 5, True, ALL),
}

# A determination clause as (consecutive, sys, dia, sys_ratio, hre_ratio); docs/ALARMS.md "Table".
Clause = tuple[int, float | None, float | None, float | None, float | None]


class Det(NamedTuple):
    """One determination row of docs/ALARMS.md's table."""

    priority: Priority
    latching: bool
    phases: frozenset[Phase]
    clauses: frozenset[Clause]


DETERMINATION: dict[str, Det] = {
    # two consecutive determinations each with SYS >= 140 or DIA >= 90
    "BP_PRE_GATE": Det(
        Priority.MEDIUM, False, frozenset({Phase.PRE}), frozenset({(2, 140, 90, None, None)})
    ),
    # determination with SYS >= 180 or DIA >= 110, at once
    "BP_HIGH": Det(Priority.MEDIUM, False, INF_POST, frozenset({(1, 180, 110, None, None)})),
    # two consecutive each with SYS >= 180 or DIA >= 110, or one with SYS >= 200 or DIA >= 120
    "BP_CRISIS": Det(
        Priority.HIGH,
        True,
        INF_POST,
        frozenset({(2, 180, 110, None, None), (1, 200, 120, None, None)}),
    ),
    # two consecutive each with SYS >= 1.30 x SYS0
    "BP_RISE": Det(Priority.MEDIUM, False, INF_POST, frozenset({(2, None, None, 1.30, None)})),
    # SYS >= 1.20 x SYS0 while the 60 s median HRE >= 1.20 x HR0
    "SYMPATHOMIMETIC_SURGE": Det(
        Priority.LOW, False, INF_POST, frozenset({(1, None, None, 1.20, 1.20)})
    ),
}

TABLE_CODES = {
    *CONTINUOUS,
    *DETERMINATION,
    "SPO2_NO_DATA",
    "HR_NO_DATA",
    "NIBP_OVERDUE",
    "BASELINE_INCOMPLETE",
    "DISCHARGE_NOT_READY",
}


@pytest.fixture(scope="module")
def shipped() -> Policy:
    return load_policy()


# ---------------------------------------------------------------- the shipped policy


def test_default_policy_is_the_shipped_file(shipped: Policy) -> None:
    assert default_policy_path() == Path(__file__).resolve().parents[2] / "config" / "alarms.toml"
    assert load_policy(default_policy_path()) == shipped


def test_every_code_of_the_table_and_no_other(shipped: Policy) -> None:
    codes = shipped.codes()
    assert len(TABLE_CODES) == 17
    assert sorted(codes) == sorted(TABLE_CODES)  # each exactly once


def test_continuous_rules_match_the_table(shipped: Policy) -> None:
    got = {
        r.code: (
            Cont(r.priority, str(r.signal), r.op, r.limit, r.delay_s, r.latching, r.phases),
            r.kind,
        )
        for r in shipped.continuous
    }
    assert got == {code: (row, AlarmKind.PHYSIOLOGICAL) for code, row in CONTINUOUS.items()}


def test_determination_rules_match_the_table(shipped: Policy) -> None:
    got = {}
    for r in shipped.determination:
        clauses = set()
        for c in r.when:
            assert c.dia_ratio is None
            if c.hre_ratio is not None:
                assert c.hre_window_s == 60.0  # "the median HRE of the last 60 s"
            clauses.add((c.consecutive, c.sys, c.dia, c.sys_ratio, c.hre_ratio))
        got[r.code] = (Det(r.priority, r.latching, r.phases, frozenset(clauses)), r.kind)
    assert got == {code: (row, AlarmKind.PHYSIOLOGICAL) for code, row in DETERMINATION.items()}


def test_no_data_rules_match_the_table(shipped: Policy) -> None:
    # "medium (low in pre)", technical, 30 s, phases pre/infusion/post; HR_NO_DATA: HR or PR
    got = {
        r.code: (r.priority, r.priority_in_pre, r.params, r.after_s, r.phases)
        for r in shipped.no_data
    }
    assert got == {
        "SPO2_NO_DATA": (Priority.MEDIUM, Priority.LOW, frozenset({Param.SPO2}), 30.0, SESSION),
        "HR_NO_DATA": (
            Priority.MEDIUM,
            Priority.LOW,
            frozenset({Param.HR, Param.PR}),
            30.0,
            SESSION,
        ),
    }


def test_timed_and_advisory_rules_match_the_table(shipped: Policy) -> None:
    od = shipped.nibp_overdue
    assert od is not None
    assert (od.code, od.priority, od.infusion_s, od.post_s) == (
        "NIBP_OVERDUE",
        Priority.MEDIUM,
        420.0,
        1020.0,
    )
    dc = shipped.discharge
    assert dc is not None
    # stop + 7200 s; "outside +-20 %"; SpO2 < SPO2_0 - 3
    assert (dc.code, dc.priority, dc.after_stop_s, dc.band, dc.spo2_drop) == (
        "DISCHARGE_NOT_READY",
        Priority.LOW,
        7200.0,
        0.20,
        3.0,
    )
    bl = shipped.baseline
    # "fewer than 2 pre determinations"; HR0/SPO2_0 over the last 300 s of pre
    assert (bl.code, bl.priority, bl.min_determinations, bl.window_s) == (
        "BASELINE_INCOMPLETE",
        Priority.LOW,
        2,
        300.0,
    )


def test_general_timing_matches_alarms_md(shipped: Policy) -> None:
    g = shipped.general
    # gap over 5 s breaks a run; clear after 5 s; HR held 10 s; escalation every 60 s up to
    # level 3; audio pause 120 s
    assert (
        g.run_gap_s,
        g.clear_after_s,
        g.hr_hold_s,
        g.escalation_interval_s,
        g.escalation_levels,
        g.audio_pause_s,
    ) == (5.0, 5.0, 10.0, 60.0, 3, 120.0)


def test_holds_is_the_rule_operator(shipped: Policy) -> None:
    rules = {r.code: r for r in shipped.continuous}
    assert rules["DESAT"].holds(91.9)
    assert not rules["DESAT"].holds(92.0)  # strict
    assert rules["TACHY"].holds(120.0)  # inclusive
    assert not rules["TACHY"].holds(119.9)
    assert rules["BRADY"].holds(45.0)
    assert not rules["BRADY"].holds(45.1)


# ---------------------------------------------------------------- refused policies

DESAT_RULE = """
[[continuous]]
code = "DESAT"
priority = "medium"
signal = "SPO2"
op = "<"
limit = 92.0
delay_s = 15.0
latching = false
phases = ["infusion", "post"]
"""

DET_RULE = """
[[determination]]
code = "BP_HIGH"
priority = "medium"
latching = false
phases = ["infusion", "post"]
when = [{ consecutive = 1, sys = 180.0, dia = 110.0 }]
"""

NO_DATA_RULE = """
[[no_data]]
code = "SPO2_NO_DATA"
priority = "medium"
priority_in_pre = "low"
params = ["SPO2"]
after_s = 30.0
phases = ["pre", "infusion", "post"]
"""


def refused(tmp_path: Path, text: str) -> tuple[str, list[ConfigProblem]]:
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    problems = info.value.problems
    assert problems
    assert all(p.file == str(path) for p in problems)
    assert str(path) in str(info.value)
    return str(path), problems


def one_problem(tmp_path: Path, text: str) -> ConfigProblem:
    _, problems = refused(tmp_path, text)
    assert len(problems) == 1, problems
    return problems[0]


def one_problem_at(tmp_path: Path, text: str, key: str) -> ConfigProblem:
    """The one problem `text` has at `key` (others may be reported elsewhere)."""
    _, problems = refused(tmp_path, text)
    at = [p for p in problems if p.key == key]
    assert len(at) == 1, problems
    return at[0]


def test_the_valid_snippets_load(tmp_path: Path) -> None:
    """Control: each refused policy below is one of these with one thing wrong."""
    path = tmp_path / "ok.toml"
    path.write_text(DESAT_RULE + DET_RULE + NO_DATA_RULE, encoding="utf-8")
    policy = load_policy(path)
    assert [r.code for r in policy.continuous] == ["DESAT"]
    assert [r.code for r in policy.determination] == ["BP_HIGH"]
    assert [r.code for r in policy.no_data] == ["SPO2_NO_DATA"]


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_policy(tmp_path / "nope.toml")
    [p] = info.value.problems
    assert (p.file, p.key) == (str(tmp_path / "nope.toml"), "(file)")
    assert "no such file" in p.reason
    p = one_problem(tmp_path, "[[continuous]\n")
    assert p.key == "(syntax)"
    assert "line 1" in p.reason


def test_unknown_signal_is_located_at_the_signal_key(tmp_path: Path) -> None:
    problems = refused(tmp_path, DESAT_RULE.replace('"SPO2"', '"BP"'))[1]
    # the key is the one in the file, not pydantic's union branch names
    assert {p.key for p in problems} == {"continuous[0].signal"}, problems
    assert any("SPO2" in p.reason and "HRE" in p.reason for p in problems)


def test_unknown_parameter_in_no_data_params(tmp_path: Path) -> None:
    p = one_problem(tmp_path, NO_DATA_RULE.replace('["SPO2"]', '["SPO2", "BP"]'))
    assert p.key == "no_data[0].params[1]"
    assert "SPO2" in p.reason  # names the known parameters


@pytest.mark.parametrize("param", ["NIBP_SYS", "NIBP_DIA", "NIBP_MEAN"])
def test_nibp_is_no_continuous_signal(tmp_path: Path, param: str) -> None:
    text = DESAT_RULE.replace('"SPO2"', f'"{param}"').replace("92.0", "150.0")
    p = one_problem(tmp_path, text)
    assert p.key in {"continuous[0]", "continuous[0].signal"}
    assert param in p.reason
    assert "continuous" in p.reason


def test_unknown_key_in_a_rule_and_at_top_level(tmp_path: Path) -> None:
    p = one_problem(tmp_path, DESAT_RULE + 'colour = "red"\n')
    assert (p.key, p.reason) == ("continuous[0].colour", "unknown key")
    p = one_problem(tmp_path, "[general]\nrun_gap = 5.0\n")
    assert (p.key, p.reason) == ("general.run_gap", "unknown key")
    p = one_problem(tmp_path, "[alarm]\nx = 1\n" + DESAT_RULE)
    assert (p.key, p.reason) == ("alarm", "unknown key")


def test_negative_delay(tmp_path: Path) -> None:
    p = one_problem(tmp_path, DESAT_RULE.replace("delay_s = 15.0", "delay_s = -1.0"))
    assert p.key == "continuous[0].delay_s"
    assert "greater than or equal to 0" in p.reason


def test_bad_priority(tmp_path: Path) -> None:
    p = one_problem(tmp_path, DESAT_RULE.replace('"medium"', '"urgent"'))
    assert p.key == "continuous[0].priority"
    assert all(w in p.reason for w in ("low", "medium", "high"))
    p = one_problem(
        tmp_path, NO_DATA_RULE.replace('priority_in_pre = "low"', "priority_in_pre = 2")
    )
    assert p.key == "no_data[0].priority_in_pre"


@pytest.mark.parametrize("limit", ["101.0", "49.0"])
def test_limit_outside_the_physiological_range(tmp_path: Path, limit: str) -> None:
    # SpO2 50-100 (docs/ALARMS.md "Vocabulary")
    p = one_problem(tmp_path, DESAT_RULE.replace("limit = 92.0", f"limit = {limit}"))
    assert p.key in {"continuous[0]", "continuous[0].limit"}
    assert limit in p.reason
    assert "50" in p.reason
    assert "100" in p.reason


def test_hre_limit_uses_the_heart_rate_range(tmp_path: Path) -> None:
    rule = (
        DESAT_RULE.replace('"SPO2"', '"HRE"').replace('"<"', '">="').replace('"DESAT"', '"TACHY"')
    )
    path = tmp_path / "ok.toml"
    path.write_text(rule.replace("92.0", "300.0"), encoding="utf-8")
    assert load_policy(path).continuous[0].limit == 300.0  # HR/PR 20-300: in range
    p = one_problem(tmp_path, rule.replace("92.0", "301.0"))
    assert p.key in {"continuous[0]", "continuous[0].limit"}
    assert "301" in p.reason


def test_determination_threshold_outside_the_pressure_range(tmp_path: Path) -> None:
    _, problems = refused(tmp_path, DET_RULE.replace("sys = 180.0", "sys = 400.0"))
    sys_problems = [p for p in problems if p.key == "determination[0].when[0].sys"]
    assert len(sys_problems) == 1
    assert "300" in sys_problems[0].reason


def test_duplicated_code_is_located(tmp_path: Path) -> None:
    second = DESAT_RULE.replace("92.0", "90.0")
    p = one_problem(tmp_path, DESAT_RULE + second)
    assert "DESAT" in p.reason
    # located at the rule that repeats the code, not at the top of the file
    assert p.key in {"continuous[1]", "continuous[1].code"}, p


def test_duplicated_code_across_sections_is_located(tmp_path: Path) -> None:
    p = one_problem(tmp_path, DESAT_RULE + NO_DATA_RULE.replace('"SPO2_NO_DATA"', '"DESAT"'))
    assert "DESAT" in p.reason
    assert p.key in {"no_data[0]", "no_data[0].code", "continuous[0]", "continuous[0].code"}, p


def test_high_rule_milder_than_medium_one_is_refused_and_located(tmp_path: Path) -> None:
    severe = (
        DESAT_RULE.replace('"DESAT"', '"DESAT_SEVERE"')
        .replace('"medium"', '"high"')
        .replace("92.0", "93.0")
    )
    p = one_problem(tmp_path, DESAT_RULE + severe)
    assert "DESAT_SEVERE" in p.reason
    assert "DESAT" in p.reason.replace("DESAT_SEVERE", "")
    assert p.key in {"continuous[1]", "continuous[1].limit"}, p


def test_severity_order_upward_and_nesting_allowed(tmp_path: Path) -> None:
    tachy = (
        DESAT_RULE.replace('"SPO2"', '"HRE"')
        .replace('"<"', '">="')
        .replace('"DESAT"', '"TACHY"')
        .replace("92.0", "120.0")
    )
    severe = tachy.replace('"TACHY"', '"TACHY_SEVERE"').replace('"medium"', '"high"')
    # high at >= 110 is milder than medium at >= 120: refused
    _, problems = refused(tmp_path, tachy + severe.replace("120.0", "110.0"))
    assert any("TACHY_SEVERE" in p.reason for p in problems)
    # high at >= 140 nests inside medium at >= 120; opposite directions never compare
    path = tmp_path / "ok.toml"
    brady = severe.replace('">="', '"<="').replace('"TACHY_SEVERE"', '"BRADY_SEVERE"')
    path.write_text(tachy + severe.replace("120.0", "140.0") + brady, encoding="utf-8")
    assert [r.code for r in load_policy(path).continuous] == [
        "TACHY",
        "TACHY_SEVERE",
        "BRADY_SEVERE",
    ]


@pytest.mark.parametrize("section", ["continuous", "determination", "no_data"])
def test_empty_phase_set(tmp_path: Path, section: str) -> None:
    text = {"continuous": DESAT_RULE, "determination": DET_RULE, "no_data": NO_DATA_RULE}[section]
    text = text.replace('phases = ["infusion", "post"]', "phases = []")
    text = text.replace('phases = ["pre", "infusion", "post"]', "phases = []")
    p = one_problem(tmp_path, text)
    assert p.key in {f"{section}[0]", f"{section}[0].phases"}
    assert "phase" in p.reason


def test_unknown_phase(tmp_path: Path) -> None:
    p = one_problem(tmp_path, DESAT_RULE.replace('["infusion", "post"]', '["infusion", "later"]'))
    assert p.key == "continuous[0].phases[1]"


def test_determination_clause_without_threshold(tmp_path: Path) -> None:
    text = DET_RULE.replace("{ consecutive = 1, sys = 180.0, dia = 110.0 }", "{ consecutive = 1 }")
    assert "threshold" in one_problem_at(tmp_path, text, "determination[0].when[0]").reason


def test_determination_clause_mixing_absolute_and_ratio(tmp_path: Path) -> None:
    text = DET_RULE.replace("dia = 110.0", "dia = 110.0, sys_ratio = 1.3")
    clause = one_problem_at(tmp_path, text, "determination[0].when[0]")
    assert "absolute" in clause.reason
    assert "relative" in clause.reason
    # the second clause of a rule is located as such
    text = DET_RULE.replace(
        "when = [{ consecutive = 1, sys = 180.0, dia = 110.0 }]",
        "when = [{ consecutive = 2, sys = 180.0 },"
        " { consecutive = 1, dia = 120.0, dia_ratio = 1.5 }]",
    )
    p = one_problem(tmp_path, text)
    assert p.key == "determination[0].when[1]"


def test_bad_clause_reports_only_the_clause(tmp_path: Path) -> None:
    """`when` holds one clause: the problem is that clause, not an empty `when`."""
    text = DET_RULE.replace("dia = 110.0", "dia = 110.0, sys_ratio = 1.3")
    _, problems = refused(tmp_path, text)
    assert [p.key for p in problems] == ["determination[0].when[0]"], problems


def test_no_data_rule_in_phase_none(tmp_path: Path) -> None:
    text = NO_DATA_RULE.replace('["pre", "infusion", "post"]', '["none", "pre", "infusion"]')
    p = one_problem(tmp_path, text)
    assert p.key in {"no_data[0]", "no_data[0].phases"}
    assert "none" in p.reason


def test_every_problem_is_reported_not_just_the_first(tmp_path: Path) -> None:
    text = DESAT_RULE.replace('"medium"', '"urgent"').replace("15.0", "-2.0") + "x = 1\n"
    _, problems = refused(tmp_path, text)
    assert {p.key for p in problems} == {
        "continuous[0].priority",
        "continuous[0].delay_s",
        "continuous[0].x",
    }
