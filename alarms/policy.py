"""The alarm policy as data: `config/alarms.toml` read into validated, frozen models.

The numbers, priorities and phase sets are data; the semantics they plug into (runs, delays,
determinations, timed alarms) are docs/ALARMS.md and live in `alarms.core`. A policy that makes
no sense is refused at start-up with the file, key and reason (`kernel.configfile.ConfigError`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Literal, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from kernel.configfile import ConfigError, ConfigProblem, read_toml, validate
from kernel.paths import default_policy_path
from kernel.vocabulary import (
    CONTINUOUS_PARAMS,
    PHYSIOLOGICAL_RANGE,
    AlarmKind,
    Param,
    Phase,
    Priority,
)

__all__ = [
    "BaselineRule",
    "ContinuousRule",
    "DeterminationClause",
    "DeterminationRule",
    "DischargeRule",
    "General",
    "NibpOverdueRule",
    "NoDataRule",
    "Policy",
    "load_policy",
]

_CODE = r"^[A-Z][A-Z0-9_]{1,47}$"
Seconds = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
PositiveSeconds = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
Ratio = Annotated[float, Field(gt=0.0, le=10.0, allow_inf_nan=False)]
Pressure = Annotated[float, Field(ge=10.0, le=300.0, allow_inf_nan=False)]
Op = Literal[">=", ">", "<=", "<"]

# The one operator table of the policy: numpy's comparisons work on a whole column of samples
# (the engine) as on one value (`ContinuousRule.holds`).
OPS: dict[str, np.ufunc] = {
    ">=": np.greater_equal,
    ">": np.greater,
    "<=": np.less_equal,
    "<": np.less,
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class General(_Model):
    """Timing constants shared by every rule (docs/ALARMS.md "Run semantics", "Alarm system")."""

    run_gap_s: PositiveSeconds = 5.0
    clear_after_s: Seconds = 5.0
    hr_hold_s: Seconds = 10.0
    escalation_interval_s: PositiveSeconds = 60.0
    escalation_levels: Annotated[int, Field(ge=0, le=10)] = 3
    audio_pause_s: PositiveSeconds = 120.0


def _phases_nonempty(phases: frozenset[Phase]) -> frozenset[Phase]:
    if not phases:
        raise ValueError("phases must name at least one phase")
    return phases


class ContinuousRule(_Model):
    """`signal op limit` held on every sample for `delay_s` (docs/ALARMS.md "Run semantics")."""

    code: Annotated[str, Field(pattern=_CODE)]
    priority: Priority
    kind: AlarmKind = AlarmKind.PHYSIOLOGICAL
    signal: Literal["HRE"] | Param
    op: Op
    limit: Annotated[float, Field(allow_inf_nan=False)]
    delay_s: Seconds
    latching: bool
    phases: frozenset[Phase]

    @model_validator(mode="after")
    def _check(self) -> Self:
        _phases_nonempty(self.phases)
        if self.signal != "HRE" and self.signal not in CONTINUOUS_PARAMS:
            raise ValueError(f"{self.signal} is not continuous (cuff BP has determination rules)")
        lo, hi = PHYSIOLOGICAL_RANGE[Param.HR if self.signal == "HRE" else Param(self.signal)]
        if not lo <= self.limit <= hi:
            raise ValueError(
                f"limit {self.limit} is outside the physiological range {lo}-{hi} of "
                f"{self.signal}: the rule could never fire"
            )
        return self

    def holds(self, value: float) -> bool:
        """Whether the condition holds on a valid `value`."""
        return bool(OPS[self.op](value, self.limit))


class DeterminationClause(_Model):
    """One way a determination rule holds (see config/alarms.toml)."""

    consecutive: Literal[1, 2] = 1
    sys: Pressure | None = None
    dia: Pressure | None = None
    sys_ratio: Ratio | None = None
    dia_ratio: Ratio | None = None
    hre_ratio: Ratio | None = None
    hre_window_s: PositiveSeconds = 60.0

    @model_validator(mode="after")
    def _check(self) -> Self:
        if (self.sys, self.dia) != (None, None) and (self.sys_ratio, self.dia_ratio) != (
            None,
            None,
        ):
            raise ValueError("a clause is absolute (sys/dia) or relative (sys_ratio/dia_ratio)")
        if (self.sys, self.dia, self.sys_ratio, self.dia_ratio) == (None, None, None, None):
            raise ValueError("a clause needs a BP threshold (sys, dia, sys_ratio or dia_ratio)")
        return self

    @property
    def relative(self) -> bool:
        """Whether the clause needs the baseline SYS0/DIA0."""
        return self.sys_ratio is not None or self.dia_ratio is not None


class DeterminationRule(_Model):
    """A rule evaluated at each cuff determination (docs/ALARMS.md "Determination rules")."""

    code: Annotated[str, Field(pattern=_CODE)]
    priority: Priority
    kind: AlarmKind = AlarmKind.PHYSIOLOGICAL
    latching: bool
    phases: frozenset[Phase]
    when: tuple[DeterminationClause, ...]

    @model_validator(mode="after")
    def _check(self) -> Self:
        _phases_nonempty(self.phases)
        # checked here, not with min_length: a tuple whose one clause is wrong would also be
        # reported as empty
        if not self.when:
            raise ValueError("when needs at least one clause")
        return self


class NoDataRule(_Model):
    """No valid sample of `params` for `after_s` (docs/ALARMS.md Reading 2)."""

    code: Annotated[str, Field(pattern=_CODE)]
    priority: Priority
    priority_in_pre: Priority
    params: Annotated[frozenset[Param], Field(min_length=1)]
    after_s: PositiveSeconds
    phases: frozenset[Phase]

    @model_validator(mode="after")
    def _check(self) -> Self:
        _phases_nonempty(self.phases)
        if Phase.NONE in self.phases:
            raise ValueError("no-data alarms need a session (phase none has no session start)")
        return self


class NibpOverdueRule(_Model):
    """No determination for too long (docs/ALARMS.md Reading 10)."""

    code: Annotated[str, Field(pattern=_CODE)] = "NIBP_OVERDUE"
    priority: Priority = Priority.MEDIUM
    infusion_s: PositiveSeconds
    post_s: PositiveSeconds


class DischargeRule(_Model):
    """Vitals back near baseline before discharge (docs/ALARMS.md Reading 11)."""

    code: Annotated[str, Field(pattern=_CODE)] = "DISCHARGE_NOT_READY"
    priority: Priority = Priority.LOW
    after_stop_s: PositiveSeconds
    band: Annotated[float, Field(gt=0.0, lt=1.0)]
    spo2_drop: Annotated[float, Field(ge=0.0, le=50.0)]


class BaselineRule(_Model):
    """Baseline taken at infusion start (docs/ALARMS.md "Baseline")."""

    code: Annotated[str, Field(pattern=_CODE)] = "BASELINE_INCOMPLETE"
    priority: Priority = Priority.LOW
    min_determinations: Annotated[int, Field(ge=1, le=10)] = 2
    window_s: PositiveSeconds = 300.0


class Policy(_Model):
    """The whole alarm policy."""

    general: General = General()
    baseline: BaselineRule = BaselineRule()
    continuous: tuple[ContinuousRule, ...] = ()
    determination: tuple[DeterminationRule, ...] = ()
    no_data: tuple[NoDataRule, ...] = ()
    nibp_overdue: NibpOverdueRule | None = None
    discharge: DischargeRule | None = None

    def problems(self) -> list[tuple[str, str]]:
        """(dotted key, reason) of every cross-rule problem: duplicated codes, bad nesting."""
        found: list[tuple[str, str]] = []
        seen: dict[str, str] = {}
        keyed: list[tuple[str, str]] = [("baseline.code", self.baseline.code)]
        for section in ("continuous", "determination", "no_data"):
            rules: tuple[ContinuousRule | DeterminationRule | NoDataRule, ...] = getattr(
                self, section
            )
            keyed += [(f"{section}[{i}].code", r.code) for i, r in enumerate(rules)]
        keyed += [
            (f"{name}.code", r.code)
            for name, r in (("nibp_overdue", self.nibp_overdue), ("discharge", self.discharge))
            if r is not None
        ]
        for key, code in keyed:
            if code in seen:
                found.append((key, f"alarm code {code} is already used at {seen[code]}"))
            else:
                seen[code] = key
        found += _severity_order_problems(self.continuous)
        return found

    def codes(self) -> list[str]:
        """Every alarm code, in table order (the order events at one moment are emitted in)."""
        out = [r.code for r in self.determination] + [r.code for r in self.continuous]
        out += [r.code for r in self.no_data]
        out += [r.code for r in (self.nibp_overdue,) if r is not None]
        out += [self.baseline.code]
        out += [r.code for r in (self.discharge,) if r is not None]
        return out


def _severity_order_problems(rules: tuple[ContinuousRule, ...]) -> list[tuple[str, str]]:
    """Thresholds that contradict their priorities, as (key, reason).

    Two rules on one signal in one direction (e.g. `SPO2 < 92` medium and `SPO2 < 88` high) must
    nest: the higher priority needs the more extreme value. A high alarm at a milder limit than a
    medium one on the same signal is almost surely a typo that silences the severe alarm's meaning.
    """
    found: list[tuple[str, str]] = []
    for i, a in enumerate(rules):
        for b in rules:
            if a is b or a.signal != b.signal or a.op[0] != b.op[0]:
                continue
            if a.priority.rank >= b.priority.rank:  # rank 0 is the most urgent
                continue
            # a outranks b: a's limit must be at least as extreme as b's
            upward = a.op[0] == ">"
            if (upward and a.limit < b.limit) or (not upward and a.limit > b.limit):
                found.append(
                    (
                        f"continuous[{i}].limit",
                        (
                            f"{a.code} ({a.priority}) fires at {a.signal} {a.op} {a.limit}, "
                            f"a milder limit than {b.code} ({b.priority}) at {b.op} {b.limit}"
                        ),
                    )
                )
    return found


def load_policy(
    path: Path | None = None,
    *,
    checks: Sequence[Callable[[Policy], list[tuple[str, str]]]] = (),
) -> Policy:
    """Read and validate the policy at `path` (default: the shipped `config/alarms.toml`).

    `Policy.problems` is checked first, then each of `checks` (a caller's own rules, such as
    the session protocol's codes), each giving (key, reason) pairs; the first that finds any
    is raised.

    Raises:
        ConfigError: with the file, key and reason of every problem.
    """
    path = path or default_policy_path()
    data = read_toml(path)
    policy: Policy = validate(Policy, data, file=str(path))
    for check in (Policy.problems, *checks):
        problems = check(policy)
        if problems:
            raise ConfigError([ConfigProblem(file=str(path), key=k, reason=r) for k, r in problems])
    return policy
