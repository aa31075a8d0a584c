"""The course of infusions one patient receives: counting, schedule checks, response to treatment.

docs/PROTOCOL.md "Course": six infusions in two consecutive weeks, three a week; response is a fall
of at least 30 % of a validated PTSD score (CAPS-5, PCL-5 or IES-R) from its baseline; a
maintenance plan is due before the course ends, since responders lose response after a median of
27.5 days. Pure functions over the journal's session records (`monitor.journal`).

Choices where the protocol is silent: an infusion counts once it started (`infusion_start_t`);
the course is the run of infusions in which no two are more than 14 days apart (a longer pause
starts a new course); "a week" is any 7 days, so a fourth infusion within 7 days of three
others is flagged; the baseline of a scale is its first score in the course, and the latest is
its last; CADSS (dissociation) is recorded but is not a response measure. The maintenance plan is
called due from the fifth infusion on, so it is raised while one session remains.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Final

__all__ = [
    "COURSE_INFUSIONS",
    "PER_WEEK",
    "RESPONSE_FALL",
    "course_summary",
]

COURSE_INFUSIONS: Final = 6  # docs/PROTOCOL.md: six infusions ...
PER_WEEK: Final = 3  # ... three a week
COURSE_DAYS: Final = 14.0  # ... over two consecutive weeks
RESPONSE_FALL: Final = 0.30  # docs/PROTOCOL.md: >= 30 % fall from baseline
MAINTENANCE_FROM: Final = 5  # the plan is due before the course ends
RESPONSE_SCALES: Final = frozenset({"CAPS-5", "PCL-5", "IES-R"})
_DAY_S: Final = 86400.0
_WEEK_S: Final = 7 * _DAY_S


def course_summary(
    sessions: Iterable[Mapping[str, Any]], *, at: float, planned: bool = False
) -> dict[str, Any]:
    """The course as of `at` (epoch s), from one patient's session infos, oldest first.

    Each info is a journal session's ``info`` (`SessionInfo` as a dict): ``infusion_start_t``
    and ``scores`` (``{"scale", "value", "t", "user"}``) are used. With `planned`, an infusion
    about to start at `at` counts too (a session just opened). Returns ``infusion_number``
    (infusions of this course), ``of`` (6), ``flags``
    (what does not add up, in words), ``maintenance_plan_due`` and ``response`` per scale
    (``baseline``, ``latest``, ``fall`` as a fraction, ``responder``).
    """
    infos = [s for s in sessions if s.get("opened_t", 0.0) <= at]
    starts = sorted(
        float(s["infusion_start_t"]) for s in infos if s.get("infusion_start_t") is not None
    )
    if planned:
        starts.append(at)
    course = _current_course(starts)
    begin = course[0] if course else at
    flags: list[str] = []
    n = len(course)
    if n > COURSE_INFUSIONS:
        flags.append(f"infusion {n} of a {COURSE_INFUSIONS}-infusion course")
    for i, t in enumerate(course):
        in_week = [u for u in course[: i + 1] if t - u < _WEEK_S]
        if len(in_week) > PER_WEEK:
            flags.append(f"{len(in_week)} infusions within 7 days (the course has {PER_WEEK})")
            break
    if course and at - begin > COURSE_DAYS * _DAY_S and n < COURSE_INFUSIONS:
        flags.append(
            f"{n} infusions in {(at - begin) / _DAY_S:.0f} days: {COURSE_INFUSIONS} are due "
            f"within {COURSE_DAYS:.0f}"
        )
    # a baseline score may come up to two weeks before the first infusion
    since = begin - COURSE_DAYS * _DAY_S if course else -math.inf
    scores = [
        sc
        for s in infos
        for sc in s.get("scores", [])
        if sc["scale"] in RESPONSE_SCALES and sc["t"] >= since
    ]
    return {
        "infusion_number": n,
        "of": COURSE_INFUSIONS,
        "course_start_t": course[0] if course else None,
        "flags": flags,
        "maintenance_plan_due": n >= MAINTENANCE_FROM,
        "response": _response(scores),
    }


def _current_course(starts: list[float]) -> list[float]:
    """The infusions of the latest course: a pause of over 14 days starts a new one."""
    course: list[float] = []
    for t in starts:
        if course and t - course[-1] > COURSE_DAYS * _DAY_S:
            course = []
        course.append(t)
    return course


def _response(scores: list[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for scale in sorted({sc["scale"] for sc in scores}):
        series = sorted((sc for sc in scores if sc["scale"] == scale), key=lambda sc: sc["t"])
        baseline, latest = float(series[0]["value"]), float(series[-1]["value"])
        fall = (baseline - latest) / baseline if baseline > 0 else 0.0
        out[scale] = {
            "baseline": baseline,
            "latest": latest,
            "fall": round(fall, 3),
            "responder": len(series) > 1 and fall >= RESPONSE_FALL,
        }
    return out
