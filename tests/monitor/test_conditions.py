"""The system-alarm rules of monitor/conditions.py, without a broker or a clock.

Expected messages are the wording docs/ARCHITECTURE.md's system alarms describe: one
DEVICE_DISCONNECTED for the bed naming every monitor down, and WARD_LINK_DOWN after the limit.
"""

from __future__ import annotations

from kernel.vocabulary import SystemAlarm
from monitor.conditions import (
    Condition,
    DeviceLinks,
    Shedding,
    disk_space,
    journal_health,
    ward_link,
)
from monitor.supervisor import LinkState

DOWN = SystemAlarm.DEVICE_DISCONNECTED
PLACES = {"ox": "port /dev/ttyUSB0", "mon1": "topic monitors/mon1"}


def test_one_device_lost_and_back() -> None:
    links = DeviceLinks(PLACES)
    assert links.changed("ox", LinkState.CONNECTING, None, alarm_active=False) == []
    assert links.changed("ox", LinkState.BACKING_OFF, "ENOENT", alarm_active=False) == [
        Condition(
            DOWN, active=True, message="no data from monitor ox (port /dev/ttyUSB0)", param="ox"
        )
    ]
    # the retries in between change nothing: the device stays down
    assert links.changed("ox", LinkState.CONNECTING, None, alarm_active=True) == []
    assert links.changed("ox", LinkState.BACKING_OFF, "ENOENT", alarm_active=True) == []
    assert links.changed("ox", LinkState.CONNECTED, None, alarm_active=True) == [
        Condition(DOWN, active=False, message="monitor ox: data again", param="ox")
    ]
    assert links.down == {}


def test_a_second_loss_raises_the_alarm_anew_naming_both() -> None:
    links = DeviceLinks(PLACES)
    links.changed("ox", LinkState.BACKING_OFF, "ENOENT", alarm_active=False)
    both = "no data from monitors ox (port /dev/ttyUSB0), mon1 (topic monitors/mon1)"
    assert links.changed("mon1", LinkState.BACKING_OFF, "refused", alarm_active=True) == [
        Condition(DOWN, active=False, message="monitor mon1 lost as well"),
        Condition(DOWN, active=True, message=both, param="mon1"),
    ]
    # one back is not all back: the alarm stays until the last one delivers
    assert links.changed("ox", LinkState.CONNECTED, None, alarm_active=True) == []
    (clear,) = links.changed("mon1", LinkState.CONNECTED, None, alarm_active=True)
    assert not clear.active


def test_a_device_down_before_a_restart_stays_down_until_it_delivers() -> None:
    links = DeviceLinks(PLACES, {"ox": "down before the restart"})
    assert links.changed("ox", LinkState.BACKING_OFF, "ENOENT", alarm_active=True) == []
    (clear,) = links.changed("ox", LinkState.CONNECTED, None, alarm_active=True)
    assert (clear.code, clear.active) == (DOWN, False)


def test_ward_link_down_after_its_limit_and_back() -> None:
    def rule(down: float | None, stalled: float, *, active: bool) -> Condition | None:
        return ward_link(
            down_for_s=down, stalled_s=stalled, limit_s=10.0, alarm_active=active, error=None
        )

    assert rule(9.9, 0.0, active=False) is None
    raised = rule(10.0, 0.0, active=False)
    assert raised == Condition(
        SystemAlarm.WARD_LINK_DOWN,
        active=True,
        message="ward broker out of reach for 10 s: no connection",
    )
    assert rule(30.0, 0.0, active=True) is None  # raised once
    # up again, but the alarms it holds still get no PUBACK: not cleared yet
    assert rule(None, 12.0, active=True) is None
    cleared = rule(None, 0.0, active=True)
    assert cleared is not None
    assert (cleared.active, cleared.message) == (False, "ward broker reachable again")


def test_a_broker_that_takes_no_alarm_counts_as_down() -> None:
    condition = ward_link(
        down_for_s=None, stalled_s=10.0, limit_s=10.0, alarm_active=False, error="not authorised"
    )
    assert condition is not None
    assert condition.message == "ward broker takes no alarm for 10 s: not authorised"


def test_samples_shed_is_raised_once_and_cleared_after_ten_quiet_seconds() -> None:
    shedding = Shedding()
    assert shedding.check(0, 100.0, 0.0, alarm_active=False) is None
    raised = shedding.check(5, 101.0, 3.4, alarm_active=False)
    assert raised == Condition(
        SystemAlarm.SAMPLES_SHED,
        active=True,
        value=5.0,
        message="more samples than the bed can take: 5 shed (the bed runs 3 s behind); "
        "check the monitors' rates",
    )
    assert shedding.check(9, 105.0, 3.0, alarm_active=True) is None  # still shedding
    assert shedding.check(9, 114.9, 0.0, alarm_active=True) is None  # 9.9 s quiet
    cleared = shedding.check(9, 115.0, 0.0, alarm_active=True)
    assert cleared == Condition(
        SystemAlarm.SAMPLES_SHED, active=False, message="no sample shed for 10 s"
    )


def test_journal_failure_and_low_space() -> None:
    failed = journal_health("disk I/O error", alarm_active=False)
    assert failed is not None
    assert (failed.code, failed.active) == (SystemAlarm.JOURNAL_FAILED, True)
    assert "disk I/O error" in failed.message
    assert journal_health("disk I/O error", alarm_active=True) is None
    assert journal_health(None, alarm_active=False) is None
    back = journal_health(None, alarm_active=True)
    assert back is not None
    assert (back.active, back.message) == (False, "journal writes again")
    low = disk_space(150.4, 200.0, alarm_active=False)
    assert low == Condition(
        SystemAlarm.JOURNAL_SPACE_LOW,
        active=True,
        value=150,
        message="150 MB free on the journal's disk (warning below 200 MB)",
    )
    assert disk_space(150.4, 200.0, alarm_active=True) is None
    assert disk_space(250.0, 200.0, alarm_active=False) is None
    space = disk_space(250.0, 200.0, alarm_active=True)
    assert space is not None
    assert (space.active, space.message) == (False, "disk space back")
