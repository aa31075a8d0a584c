"""The rules that turn link and device states into system alarms: pure, no clock, no broker.

The daemon (monitor/daemon.py) watches its links and calls these with what it saw; each rule
returns the `Condition`s to apply to the bed (`Bed.condition`), in order, and keeps no I/O of its
own, so every rule is tested without a broker (tests/monitor/test_conditions.py). The alarms and
their meaning are docs/ARCHITECTURE.md "Alarm event JSON" (system alarms).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from kernel.vocabulary import SystemAlarm
from monitor.supervisor import LinkState

__all__ = [
    "SHED_QUIET_S",
    "Condition",
    "DeviceLinks",
    "Shedding",
    "disk_space",
    "journal_health",
    "ward_link",
]

# real seconds without a sample shed before SAMPLES_SHED clears
SHED_QUIET_S = 10.0


@dataclass(frozen=True, slots=True)
class Condition:
    """Raise (`active`) or clear one system alarm, with the message a nurse reads."""

    code: SystemAlarm
    active: bool
    message: str
    param: str | None = None
    value: float | None = None


@dataclass
class DeviceLinks:
    """`DEVICE_DISCONNECTED` while any device is down (issue 5, item 6).

    A device is down from the moment its driver fails (port gone, open refused, silent past the
    protocol's quiet time, broker lost) until data flows again (the driver's `connected()`);
    the retries in between do not count as up. One alarm for the bed: when another device is
    lost while it is active (perhaps acknowledged), it is raised anew, naming them all, so the
    second loss is announced too. `connections` says where each device is plugged, in the
    words of the alarm message; `down` is each down device's last error.
    """

    connections: Mapping[str, str]
    down: dict[str, str] = field(default_factory=dict)

    def changed(
        self, name: str, state: LinkState, error: str | None, *, alarm_active: bool
    ) -> list[Condition]:
        """The conditions to apply now that device `name`'s link is in `state`."""
        code = SystemAlarm.DEVICE_DISCONNECTED
        if state is LinkState.BACKING_OFF:
            new = name not in self.down
            self.down[name] = error or "lost"
            if not new:
                return []
            out = [Condition(code, active=False, message=f"monitor {name} lost as well")]
            out = out if alarm_active else []
            return [*out, Condition(code, active=True, message=self.lost_message(), param=name)]
        if state is LinkState.CONNECTED and name in self.down:
            del self.down[name]
            if not self.down:
                return [
                    Condition(code, active=False, message=f"monitor {name}: data again", param=name)
                ]
        return []

    def lost_message(self) -> str:
        """`no data from monitor ox (port /dev/ttyUSB0)`, or every monitor down, for a person."""
        down = [f"{d} ({self.connections[d]})" for d in self.down]
        return f"no data from monitor{'s' if len(down) > 1 else ''} {', '.join(down)}"


def ward_link(
    *,
    down_for_s: float | None,
    stalled_s: float,
    limit_s: float,
    alarm_active: bool,
    error: str | None,
) -> Condition | None:
    """`WARD_LINK_DOWN` while the broker is out of reach, or takes no alarm, for its limit.

    `down_for_s`: how long the link has been down (None: it is up); `stalled_s`: how long the
    oldest waiting alarm has had no PUBACK. A link that reconnects only to fail again (an ACL
    that refuses the bed's alarms, a flapping network) never stays down for long: alarms waiting
    without any PUBACK for as long count the same. Cleared once the link is up and alarms move
    again (issue 6, item 3).
    """
    down = down_for_s is not None and down_for_s >= limit_s
    stalled = stalled_s >= limit_s
    if (down or stalled) and not alarm_active:
        what = "out of reach" if down else "takes no alarm"
        reason = error or "no connection"
        return Condition(
            SystemAlarm.WARD_LINK_DOWN,
            active=True,
            message=f"ward broker {what} for {limit_s:g} s: {reason}",
        )
    if alarm_active and down_for_s is None and not stalled:
        return Condition(
            SystemAlarm.WARD_LINK_DOWN, active=False, message="ward broker reachable again"
        )
    return None


@dataclass
class Shedding:
    """`SAMPLES_SHED` while samples are being shed; cleared after `SHED_QUIET_S` without.

    `seen` is the count of samples shed so far (every queue's), `last` when it last grew
    (monotonic seconds).
    """

    seen: int = 0
    last: float = 0.0

    def check(self, shed: int, now: float, lag_s: float, *, alarm_active: bool) -> Condition | None:
        """The condition to apply with `shed` samples shed so far at monotonic time `now`."""
        if shed > self.seen:
            new = shed - self.seen
            self.seen, self.last = shed, now
            if alarm_active:
                return None
            return Condition(
                SystemAlarm.SAMPLES_SHED,
                active=True,
                value=float(new),
                message=f"more samples than the bed can take: {new} shed "
                f"(the bed runs {lag_s:.0f} s behind); check the monitors' rates",
            )
        if alarm_active and now - self.last >= SHED_QUIET_S:
            return Condition(
                SystemAlarm.SAMPLES_SHED,
                active=False,
                message=f"no sample shed for {SHED_QUIET_S:g} s",
            )
        return None


def journal_health(failed: str | None, *, alarm_active: bool) -> Condition | None:
    """`JOURNAL_FAILED` while the disk refuses the journal or the outbox (`failed` says why).

    Monitoring and alarming go on in memory meanwhile (`monitor.storage`); the alarm is cleared
    once both write again.
    """
    if failed is not None and not alarm_active:
        return Condition(
            SystemAlarm.JOURNAL_FAILED,
            active=True,
            message=f"the bed cannot write its journal ({failed}): alarms go on, but a "
            "restart now would lose the session; free the disk",
        )
    if failed is None and alarm_active:
        return Condition(SystemAlarm.JOURNAL_FAILED, active=False, message="journal writes again")
    return None


def disk_space(free_mb: float, min_free_mb: float, *, alarm_active: bool) -> Condition | None:
    """`JOURNAL_SPACE_LOW` while less than `min_free_mb` is free on the journal's disk."""
    low = free_mb < min_free_mb
    if low and not alarm_active:
        return Condition(
            SystemAlarm.JOURNAL_SPACE_LOW,
            active=True,
            value=round(free_mb),
            message=f"{free_mb:.0f} MB free on the journal's disk "
            f"(warning below {min_free_mb:g} MB)",
        )
    if not low and alarm_active:
        return Condition(SystemAlarm.JOURNAL_SPACE_LOW, active=False, message="disk space back")
    return None
