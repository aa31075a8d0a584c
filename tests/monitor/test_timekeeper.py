"""Time is the bed's: samples off the bed's clock are re-stamped and never move the engine.

The defects these pin (issue 17, items 1 and 2): one valid sample dated ten years ahead made the
no-data alarms flap on every sample and gave every event a future time; a monitor clock an hour
off left the baseline without HR0/SPO2_0, so the surge could never fire, and said nothing.
"""

from __future__ import annotations

import json
import math

import pytest

from alarms.policy import load_policy
from kernel.clock import ManualClock
from kernel.vocabulary import AlarmEvent, Param, Sample
from monitor.bed import Bed
from monitor.commands import Checklist
from monitor.session import BedCore
from monitor.timekeeper import ClockChange, Timekeeper

T0 = 1767225600.0
TEN_YEARS = 10 * 365.25 * 86400


def s(t: float, param: Param = Param.HR, value: float = 70.0, dev: str = "mon1") -> Sample:
    return Sample(t, param, value, True, dev)


# ---------------------------------------------------------------- the rule


def test_a_sample_within_the_bounds_keeps_its_time() -> None:
    tk = Timekeeper(max_ahead_s=5, max_behind_s=25)
    batch = [s(T0 - 25), s(T0 + 5), s(T0)]
    out, changes = tk.stamp(batch, T0)
    assert [x.t for x in out] == [T0 - 25, T0 + 5, T0]
    assert changes == []
    assert tk.restamped == {}


def test_a_sample_far_ahead_is_restamped_and_the_offset_kept_for_the_device() -> None:
    tk = Timekeeper(max_ahead_s=5, max_behind_s=25)
    out, changes = tk.stamp([s(T0 + TEN_YEARS)], T0)
    assert [x.t for x in out] == [T0]
    assert changes == [ClockChange("mon1", TEN_YEARS)]
    # one second later on both clocks: the device's next sample lands one second later
    out, changes = tk.stamp([s(T0 + TEN_YEARS + 1.0)], T0 + 1.0)
    assert [x.t for x in out] == [T0 + 1.0]
    assert changes == []
    assert tk.restamped == {("mon1", "ahead"): 2}


def test_a_determination_stays_one_determination() -> None:
    tk = Timekeeper(max_ahead_s=5, max_behind_s=25)
    t = T0 - 3600.0  # a monitor clock an hour behind
    batch = [s(t, Param.NIBP_SYS, 120), s(t, Param.NIBP_DIA, 80), s(t, Param.NIBP_MEAN, 93)]
    out, _ = tk.stamp(batch, T0 + 0.5)
    assert {x.t for x in out} == {T0 + 0.5}
    assert tk.restamped == {("mon1", "behind"): 3}


def test_the_offset_goes_when_the_device_clock_is_right_again() -> None:
    tk = Timekeeper(max_ahead_s=5, max_behind_s=25)
    tk.stamp([s(T0 - 3600.0)], T0)
    out, changes = tk.stamp([s(T0 + 1.0), s(T0 + 1.0, dev="mon2")], T0 + 1.0)
    assert [x.t for x in out] == [T0 + 1.0, T0 + 1.0]
    assert changes == [ClockChange("mon1", None)]
    assert tk.offsets == {}


def test_only_the_device_whose_clock_is_off_is_restamped() -> None:
    tk = Timekeeper(max_ahead_s=5, max_behind_s=25)
    out, changes = tk.stamp([s(T0 + 7200.0, dev="mon2"), s(T0 - 0.5, dev="mon1")], T0)
    assert [(x.device_id, x.t) for x in out] == [("mon2", T0), ("mon1", T0 - 0.5)]
    assert changes == [ClockChange("mon2", 7200.0)]


def test_a_restamped_time_is_never_after_the_bed_now() -> None:
    tk = Timekeeper(max_ahead_s=5, max_behind_s=25)
    tk.stamp([s(T0 + 100.0)], T0)  # offset +100 measured
    # the device's next sample comes 3 s early against that offset: clamped to now
    out, _ = tk.stamp([s(T0 + 104.0)], T0 + 1.0)
    assert [x.t for x in out] == [T0 + 1.0]


def test_negative_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        Timekeeper(max_ahead_s=-1, max_behind_s=25)


# ---------------------------------------------------------------- the bed


class BedRig:
    """A bed loop on a manual clock; every event it emits is kept."""

    def __init__(self) -> None:
        self.clock = ManualClock(T0)
        self.core = BedCore(load_policy(), ward="w1", bed="b1")
        self.events: list[AlarmEvent] = []
        self.bed = Bed(
            self.core,
            clock=self.clock,
            tick_grace_s=0.2,
            emit=lambda events, _samples: self.events.extend(events),
            timekeeper=Timekeeper(max_ahead_s=5, max_behind_s=25),
        )

    def command(self, cmd: str, **fields: object) -> dict[str, object]:
        payload = {"cmd": cmd, "request_id": f"r-{cmd}", "user": "nurse", **fields}
        return self.bed.command(json.dumps(payload).encode())

    def second(self, samples: list[Sample]) -> None:
        """One second of bed time: the samples arrive, then the tick."""
        self.clock.advance(1.0)
        for x in samples:
            self.bed.samples.put(x)
        self.bed.drain()
        self.bed.tick(math.floor(self.clock.now()))

    def codes(self, code: str) -> list[tuple[float, str]]:
        return [(e.t - T0, e.state.value) for e in self.events if e.code == code]


def open_session(rig: BedRig) -> None:
    checklist = dict.fromkeys(Checklist.model_fields, False)
    result = rig.command(
        "open_session",
        patient_id="P-1",
        weight_kg=70,
        concentration_mg_per_ml=10,
        checklist=checklist,
    )
    assert result["ok"], result


def test_one_sample_ten_years_ahead_does_not_move_the_bed() -> None:
    rig = BedRig()
    open_session(rig)
    for i in range(1, 121):
        now = T0 + i
        rig.second([s(now - 0.5, Param.HR, 70), s(now - 0.4, Param.SPO2, 98)])
        if i == 60:
            rig.second([s(now + TEN_YEARS, Param.SPO2, 97)])
    # the engine's now is the bed's; no event carries a future time; the no-data alarms
    # never fired (every second had HR and SpO2)
    assert rig.core.engine.now <= rig.clock.now()
    assert all(e.t <= rig.clock.now() for e in rig.events)
    assert rig.codes("SPO2_NO_DATA") == []
    assert rig.codes("HR_NO_DATA") == []
    # said, naming the device, and over at the device's next sample on time
    clock_off = [e for e in rig.events if e.code == "DEVICE_CLOCK_OFF"]
    assert [(e.t - T0, e.state.value) for e in clock_off] == [(61.0, "active"), (62.0, "cleared")]
    assert clock_off[0].param == "mon1"
    assert "mon1" in clock_off[0].message
    assert clock_off[0].value == pytest.approx(TEN_YEARS, abs=1.0)


@pytest.mark.parametrize("offset", [-3600.0, 3600.0])
def test_a_monitor_clock_an_hour_off_still_takes_the_baseline_and_raises_the_surge(
    offset: float,
) -> None:
    rig = BedRig()
    open_session(rig)

    def vitals(now: float, hr: float) -> list[Sample]:
        # the monitor stamps with its own clock, `offset` off the bed's
        return [s(now - 0.5 + offset, Param.HR, hr), s(now - 0.4 + offset, Param.SPO2, 98)]

    def nibp(now: float, sys_: float, dia: float) -> list[Sample]:
        t = now - 0.3 + offset
        return [
            s(t, Param.NIBP_SYS, sys_),
            s(t, Param.NIBP_DIA, dia),
            s(t, Param.NIBP_MEAN, round((sys_ + 2 * dia) / 3)),
        ]

    for i in range(1, 401):
        now = T0 + i
        batch = vitals(now, 70)
        if i in (60, 360):
            batch += nibp(now, 120, 80)
        rig.second(batch)
    assert rig.command("start_infusion")["ok"]
    baseline = rig.core.engine.baseline
    assert baseline is not None
    assert (baseline.sys0, baseline.dia0, baseline.hr0, baseline.spo2_0) == (120, 80, 70, 98)
    # minute 1 to 3 of the infusion: HR 90 (>= 1.2 x 70 = 84), a cuff of 150/90 at +560
    # (150 >= 1.2 x 120 = 144): the surge at that determination
    for i in range(401, 601):
        now = T0 + i
        batch = vitals(now, 90)
        if i == 560:
            batch += nibp(now, 150, 90)
        rig.second(batch)
    # every sample of the device lands on the bed's second it arrived in (the offset was
    # measured on its first one), so the determination is at +560
    assert rig.codes("SYMPATHOMIMETIC_SURGE") == [(560.0, "active")]
    assert rig.codes("HR_NO_DATA") == []
    assert rig.codes("SPO2_NO_DATA") == []
    clock_off = [e for e in rig.events if e.code == "DEVICE_CLOCK_OFF"]
    assert [e.state.value for e in clock_off] == ["active"]
    assert clock_off[0].value == pytest.approx(offset, abs=1.0)
    assert f"{offset:+.0f} s" in clock_off[0].message
