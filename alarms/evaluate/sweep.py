"""Policy sweeps: one numeric field of one rule set to each value of a range.

`--sweep TARGET=VALUES`, where TARGET is
- `CODE.field`: a numeric field of the rule whose code is CODE (`TACHY.limit`,
  `DESAT.delay_s`, `SPO2_NO_DATA.after_s`, `NIBP_OVERDUE.infusion_s`,
  `DISCHARGE_NOT_READY.band`, `BASELINE_INCOMPLETE.window_s`); for a determination rule the field
  of its clauses (`BP_HIGH.dia`): every clause that sets it gets the value;
- `CODE.when[i].field`: that one clause of a determination rule (`BP_CRISIS.when[1].sys`);
  a clause that did not set the field gains it;
- `general.field`: a shared timing constant (`general.run_gap_s`);

and VALUES is `a:b:step` (a, a + step, ... up to b inclusive) or a comma list (`100,105,120`).
Each variant is validated as the policy file would be (ranges, the nesting of severities), so
a sweep never replays a policy that `vigil check-config` would refuse.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from alarms.policy import Policy
from kernel.configfile import problems_from

__all__ = ["Sweep", "SweepError", "parse_sweep"]

_TARGET = re.compile(
    r"^(?P<code>[A-Za-z][A-Za-z0-9_]*)\.(?:when\[(?P<i>\d+)\]\.)?(?P<field>[a-z0-9_]+)$"
)
_MAX_VALUES = 200


class SweepError(ValueError):
    """A sweep that cannot be run, with the reason."""


@dataclass(frozen=True)
class Sweep:
    """A parsed sweep: its text, target and the policies, one per value."""

    text: str
    code: str  # the rule's code, or "general"
    field: str
    clause: int | None
    values: tuple[float, ...]
    policies: tuple[Policy, ...]

    @property
    def target(self) -> str:
        """The TARGET part as written, normalised."""
        where = f"when[{self.clause}]." if self.clause is not None else ""
        return f"{self.code}.{where}{self.field}"


def _values(text: str) -> tuple[float, ...]:
    try:
        if ":" in text:
            a, b, step = (float(x) for x in text.split(":"))
            if not all(math.isfinite(x) for x in (a, b, step)) or step <= 0 or b < a:
                raise SweepError(f"range {text!r}: need a <= b and a step > 0")
            count = math.floor((b - a) / step + 1e-9) + 1
            vals = tuple(round(a + i * step, 10) for i in range(count))
        else:
            vals = tuple(float(x) for x in text.split(","))
    except ValueError as exc:
        if isinstance(exc, SweepError):
            raise
        raise SweepError(f"values {text!r}: expected a:b:step or a comma list of numbers") from None
    if not vals or len(vals) > _MAX_VALUES or not all(math.isfinite(v) for v in vals):
        raise SweepError(f"values {text!r}: between 1 and {_MAX_VALUES} finite numbers")
    return vals


def _numeric(model: BaseModel, field: str) -> bool:
    value = getattr(model, field, None)
    return isinstance(value, int | float) and not isinstance(value, bool)


def _set(policy: Policy, code: str, field: str, clause: int | None, value: float) -> dict[str, Any]:
    """The policy's data with the field changed (for validation as a whole)."""
    data = policy.model_dump(mode="json")
    if code == "general":
        if not _numeric(policy.general, field):
            raise SweepError(f"general has no numeric field {field!r}")
        data["general"][field] = _typed(policy.general, field, value)
        return data
    for section in ("continuous", "determination", "no_data"):
        for i, rule in enumerate(getattr(policy, section)):
            if rule.code == code:
                _set_rule(data[section][i], rule, field, clause, value)
                return data
    for section in ("nibp_overdue", "discharge", "baseline"):
        rule = getattr(policy, section)
        if rule is not None and rule.code == code:
            if clause is not None:
                raise SweepError(f"{code} has no clauses (when[...] is for determination rules)")
            if not _numeric(rule, field):
                raise SweepError(f"{code} has no numeric field {field!r}")
            data[section][field] = _typed(rule, field, value)
            return data
    raise SweepError(f"no rule with code {code} in the policy (known: {', '.join(policy.codes())})")


def _typed(model: BaseModel, field: str, value: float) -> float | int:
    current = getattr(model, field)
    if isinstance(current, int) and not isinstance(current, bool):
        if not value.is_integer():
            raise SweepError(f"{field} is a whole number; {value:g} is not")
        return int(value)
    return value


def _set_rule(
    data: dict[str, Any], rule: BaseModel, field: str, clause: int | None, value: float
) -> dict[str, Any]:
    code = getattr(rule, "code", "?")
    clauses = getattr(rule, "when", None)
    if clauses is None:
        if clause is not None:
            raise SweepError(f"{code} has no clauses (when[...] is for determination rules)")
        if not _numeric(rule, field):
            raise SweepError(f"{code} has no numeric field {field!r}")
        data[field] = _typed(rule, field, value)
        return data
    if clause is not None:
        if clause >= len(clauses):
            raise SweepError(f"{code} has {len(clauses)} clause(s): when[{clause}] does not exist")
        if field not in type(clauses[clause]).model_fields or field == "consecutive":
            raise SweepError(f"a clause has no numeric field {field!r}")
        data["when"][clause][field] = value
        return data
    if field in type(rule).model_fields and _numeric(rule, field):
        data[field] = _typed(rule, field, value)
        return data
    hit = [i for i, c in enumerate(clauses) if getattr(c, field, None) is not None]
    if not hit or field == "consecutive":
        raise SweepError(f"no clause of {code} sets {field!r} (name one: {code}.when[i].{field})")
    for i in hit:
        data["when"][i][field] = value
    return data


def parse_sweep(text: str, policy: Policy) -> Sweep:
    """`TARGET=VALUES` against `policy`; each variant validated.

    Raises:
        SweepError: the text, the target or a value is not usable, saying which and why.
    """
    target, sep, values_text = text.partition("=")
    m = _TARGET.match(target.strip())
    if not sep or m is None:
        raise SweepError(f"{text!r}: expected CODE.field=a:b:step (e.g. BP_HIGH.dia=100:120:5)")
    code, field = m["code"], m["field"]
    clause = int(m["i"]) if m["i"] is not None else None
    values = _values(values_text.strip())
    policies = []
    for v in values:
        data = _set(policy, code, field, clause, v)
        try:
            variant = Policy.model_validate(data)
        except ValidationError as exc:
            reasons = "; ".join(p.reason for p in problems_from(exc, data, file="sweep"))
            raise SweepError(f"{target.strip()}={v:g}: {reasons}") from None
        if problems := variant.problems():
            raise SweepError(f"{target.strip()}={v:g}: " + "; ".join(r for _, r in problems))
        policies.append(variant)
    return Sweep(text, code, field, clause, values, tuple(policies))
