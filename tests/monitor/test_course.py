"""monitor.course: docs/PROTOCOL.md "Course" (six infusions, three a week, >= 30 % response)."""

from __future__ import annotations

from typing import Any

from monitor.course import course_summary

DAY = 86400.0
T0 = 1_800_000_000.0


def session(day: float, *, started: bool = True, scores: list[Any] | None = None) -> dict[str, Any]:
    t = T0 + day * DAY
    return {
        "opened_t": t,
        "infusion_start_t": t + 600 if started else None,
        "scores": scores or [],
    }


def score(day: float, scale: str, value: float) -> dict[str, Any]:
    return {"scale": scale, "value": value, "t": T0 + day * DAY, "user": "dr"}


def test_the_trial_schedule_adds_up() -> None:
    # Mon, Wed, Fri for two weeks
    days = [0, 2, 4, 7, 9, 11]
    summary = course_summary([session(d) for d in days], at=T0 + 11 * DAY + 3600)
    assert summary["infusion_number"] == 6
    assert summary["of"] == 6
    assert summary["flags"] == []
    assert summary["maintenance_plan_due"] is True


def test_a_session_just_opened_counts_as_the_next_infusion() -> None:
    history = [session(0), session(2), session(4), session(7, started=False)]
    summary = course_summary(history, at=T0 + 7 * DAY + 60, planned=True)
    assert summary["infusion_number"] == 4
    assert summary["maintenance_plan_due"] is False


def test_four_in_a_week_is_flagged() -> None:
    summary = course_summary([session(d) for d in (0, 1, 2, 3)], at=T0 + 3 * DAY + 3600)
    assert summary["flags"] == ["4 infusions within 7 days (the course has 3)"]


def test_twice_weekly_for_two_weeks_does_not_add_up() -> None:
    # "twice weekly for 2 weeks (total of 6 infusions)": only 4 by day 14, flagged by day 16
    days = [0, 3, 7, 10]
    summary = course_summary([session(d) for d in days], at=T0 + 16 * DAY)
    assert summary["infusion_number"] == 4
    assert summary["flags"] == ["4 infusions in 16 days: 6 are due within 14"]


def test_a_seventh_infusion_is_flagged_and_a_long_pause_starts_a_new_course() -> None:
    days = [0, 2, 4, 7, 9, 11, 13]
    summary = course_summary([session(d) for d in days], at=T0 + 13 * DAY + 3600)
    assert "infusion 7 of a 6-infusion course" in summary["flags"]
    later = course_summary([session(d) for d in [*days, 40]], at=T0 + 40 * DAY + 3600)
    assert later["infusion_number"] == 1
    assert later["flags"] == []


def test_response_is_a_30_percent_fall_from_baseline() -> None:
    sessions = [
        session(0, scores=[score(-1, "CAPS-5", 50.0), score(0, "CADSS", 20.0)]),
        session(7, scores=[score(1, "CAPS-5", 36.0), score(7, "PCL-5", 60.0)]),
        session(9, scores=[score(8, "CAPS-5", 34.0), score(9, "PCL-5", 45.0)]),
    ]
    response = course_summary(sessions, at=T0 + 9 * DAY)["response"]
    # CAPS-5: 50 -> 34 is a 32 % fall; PCL-5: 60 -> 45 is 25 %; CADSS is not a response scale
    assert response == {
        "CAPS-5": {"baseline": 50.0, "latest": 34.0, "fall": 0.32, "responder": True},
        "PCL-5": {"baseline": 60.0, "latest": 45.0, "fall": 0.25, "responder": False},
    }


def test_a_single_score_is_no_response_yet() -> None:
    response = course_summary([session(0, scores=[score(0, "PCL-5", 10.0)])], at=T0)["response"]
    assert response["PCL-5"]["responder"] is False
