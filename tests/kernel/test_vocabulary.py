"""The vocabulary's names (kernel/vocabulary.py): system alarms and the order of priorities."""

from __future__ import annotations

import pytest

from kernel.vocabulary import (
    PRIORITY_ORDER,
    SYSTEM_ALARM_CODES,
    AlarmKind,
    Priority,
    SystemAlarm,
    system_alarm,
)

# docs/ARCHITECTURE.md "Alarm event JSON", the system alarms paragraph, written out by hand:
# code: (priority, kind, latched, cleared by a discharge)
DOCUMENTED = {
    "DEVICE_DISCONNECTED": (Priority.MEDIUM, AlarmKind.TECHNICAL, False, False),
    "WARD_LINK_DOWN": (Priority.MEDIUM, AlarmKind.TECHNICAL, False, False),
    "MONITORING_GAP": (Priority.MEDIUM, AlarmKind.TECHNICAL, True, True),
    "INFUSION_LONG": (Priority.LOW, AlarmKind.ADVISORY, False, True),
    "DEVICE_CLOCK_OFF": (Priority.LOW, AlarmKind.TECHNICAL, False, False),
    "JOURNAL_FAILED": (Priority.HIGH, AlarmKind.TECHNICAL, False, False),
    "JOURNAL_SPACE_LOW": (Priority.LOW, AlarmKind.TECHNICAL, False, False),
    "SAMPLES_SHED": (Priority.MEDIUM, AlarmKind.TECHNICAL, False, False),
}


def test_system_alarms_carry_the_documented_priority_kind_and_latching() -> None:
    assert {a.value for a in SystemAlarm} == set(DOCUMENTED) == SYSTEM_ALARM_CODES
    for code, (priority, kind, latching, discharged) in DOCUMENTED.items():
        alarm = system_alarm(code)
        assert (alarm.priority, alarm.kind, alarm.latching) == (priority, kind, latching), code
        assert alarm.of_bed is not discharged, code


def test_an_unknown_code_is_no_system_alarm() -> None:
    with pytest.raises(KeyError):
        system_alarm("BP_CRISIS")


def test_priorities_rank_most_urgent_first() -> None:
    assert PRIORITY_ORDER == (Priority.HIGH, Priority.MEDIUM, Priority.LOW)
    assert [p.rank for p in (Priority.HIGH, Priority.MEDIUM, Priority.LOW)] == [0, 1, 2]
