"""The alarm burden of a cohort: pure statistics over per-session results.

For each *group* (every alarm code, each priority, and `any` alarm) and each *scope* (the whole
session, or one phase: `pre`, `infusion`, `post`):
- `sessions`: the sessions in scope (for a phase, those that went through it);
- `with_alarm`: how many had at least one activation, and the share with its 95 % Wilson
  score interval;
- activations per session over those sessions, zeros included: mean, median, 90th percentile
  (linear interpolation between order statistics, numpy's default) and maximum;
- time in alarm: seconds an alarm of the group was active, per session (mean), and as a share of
  the time in scope. For a code it is the sum of its activations' durations; for a priority or
  `any`, the time at least one alarm of the group was active (overlaps counted once).

An activation belongs to the phase it was raised in; its time in alarm is split across the
phases it lasted through. Sessions are taken in the order given and every sum runs in that
order, so the same sessions in the same order give the same figures to the last bit whatever
computed them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from alarms.evaluate.sessions import Activation, SessionResult
from kernel.vocabulary import PRIORITY_ORDER, Phase

__all__ = [
    "SCOPES",
    "BurdenRow",
    "DetectionRow",
    "burden",
    "detection",
    "group_order",
    "wilson",
]

Z95 = 1.959963984540054  # the 97.5 % point of the standard normal
SCOPES: tuple[str, ...] = ("session", Phase.PRE.value, Phase.INFUSION.value, Phase.POST.value)


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion `k`/`n` (0, 1 when `n` is 0)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True, slots=True)
class BurdenRow:
    """The burden of one group in one scope (see the module docstring)."""

    group: str  # "any", "priority", "code"
    name: str  # "any", a priority, or an alarm code
    scope: str  # "session" or a phase
    sessions: int
    with_alarm: int
    share: float
    share_low: float
    share_high: float
    mean: float
    median: float
    p90: float
    max: int
    time_mean_s: float
    time_share: float


def group_order(sessions: Iterable[SessionResult], codes: Sequence[str]) -> list[tuple[str, str]]:
    """(group, name) pairs: any, the priorities, `codes` in order, then codes only seen."""
    seen = list(codes)
    for s in sessions:
        for a in s.activations:
            if a.code not in seen:
                seen.append(a.code)
    return [("any", "any"), *(("priority", p.value) for p in PRIORITY_ORDER)] + [
        ("code", c) for c in seen
    ]


def _members(group: str, name: str, acts: Iterable[Activation]) -> list[Activation]:
    if group == "any":
        return list(acts)
    if group == "priority":
        return [a for a in acts if a.priority.value == name]
    return [a for a in acts if a.code == name]


def _covered(intervals: list[tuple[float, float]], lo: float, hi: float, *, union: bool) -> float:
    """Seconds of [lo, hi) covered by `intervals`: summed, or as their union."""
    clipped = sorted((max(a, lo), min(b, hi)) for a, b in intervals if min(b, hi) > max(a, lo))
    if not union:
        return math.fsum(b - a for a, b in clipped)
    total, cur_a, cur_b = 0.0, None, None
    for a, b in clipped:
        if cur_b is None or a > cur_b:
            if cur_a is not None and cur_b is not None:
                total += cur_b - cur_a
            cur_a, cur_b = a, b
        else:
            cur_b = max(cur_b, b)
    if cur_a is not None and cur_b is not None:
        total += cur_b - cur_a
    return total


def burden(sessions: Sequence[SessionResult], codes: Sequence[str]) -> list[BurdenRow]:
    """Every (group, scope) row, groups in `group_order`, scopes in `SCOPES` order."""
    out: list[BurdenRow] = []
    spans = [s.phase_spans() for s in sessions]
    for group, name in group_order(sessions, codes):
        union = group != "code"
        for scope in SCOPES:
            counts: list[int] = []
            times: list[float] = []
            in_scope = 0.0
            for s, sp in zip(sessions, spans, strict=True):
                if scope == "session":
                    lo, hi = s.start, s.end
                    acts = _members(group, name, s.activations)
                elif Phase(scope) in sp:
                    lo, hi = sp[Phase(scope)]
                    acts = [
                        a for a in _members(group, name, s.activations) if a.phase.value == scope
                    ]
                else:
                    continue
                counts.append(len(acts))
                every = _members(group, name, s.activations)
                times.append(_covered([(a.t, a.end) for a in every], lo, hi, union=union))
                in_scope += hi - lo
            out.append(_row(group, name, scope, counts, times, in_scope))
    return out


def _row(
    group: str, name: str, scope: str, counts: list[int], times: list[float], in_scope: float
) -> BurdenRow:
    n = len(counts)
    k = sum(1 for c in counts if c > 0)
    lo, hi = wilson(k, n)
    arr = np.asarray(counts, dtype=np.float64)
    total_time = math.fsum(times)
    return BurdenRow(
        group=group,
        name=name,
        scope=scope,
        sessions=n,
        with_alarm=k,
        share=k / n if n else 0.0,
        share_low=lo,
        share_high=hi,
        mean=float(arr.mean()) if n else 0.0,
        median=float(np.median(arr)) if n else 0.0,
        p90=float(np.percentile(arr, 90)) if n else 0.0,
        max=int(arr.max()) if n else 0,
        time_mean_s=total_time / n if n else 0.0,
        time_share=total_time / in_scope if in_scope > 0 else 0.0,
    )


@dataclass(frozen=True, slots=True)
class DetectionRow:
    """How well one alarm code caught the annotated true events it is meant for."""

    code: str
    events: int
    detected: int
    sensitivity: float
    sensitivity_low: float
    sensitivity_high: float
    delay_median_s: float | None
    delay_p90_s: float | None
    delay_max_s: float | None


def detection(sessions: Sequence[SessionResult], window_s: float) -> list[DetectionRow]:
    """Sensitivity and time to alarm per annotated code, codes in order of first mention.

    A true event (t, code) is detected when an activation of `code` in its session is active at
    some moment of [t, t + window_s]; its time to alarm is the first such activation's start
    minus t (0 when the alarm was already active at t).
    """
    delays: dict[str, list[float | None]] = {}
    for s in sessions:
        for ev in s.true_events:
            hits = [
                a.t - ev.t if a.t > ev.t else 0.0
                for a in s.activations
                if a.code == ev.code and a.t <= ev.t + window_s and a.end >= ev.t
            ]
            delays.setdefault(ev.code, []).append(min(hits) if hits else None)
    out: list[DetectionRow] = []
    for code, ds in delays.items():
        found = [d for d in ds if d is not None]
        lo, hi = wilson(len(found), len(ds))
        arr = np.asarray(found, dtype=np.float64)
        out.append(
            DetectionRow(
                code=code,
                events=len(ds),
                detected=len(found),
                sensitivity=len(found) / len(ds),
                sensitivity_low=lo,
                sensitivity_high=hi,
                delay_median_s=float(np.median(arr)) if found else None,
                delay_p90_s=float(np.percentile(arr, 90)) if found else None,
                delay_max_s=float(arr.max()) if found else None,
            )
        )
    return out
