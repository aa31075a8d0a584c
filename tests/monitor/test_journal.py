"""The journal and resuming from it: a restarted bed is the bed that stopped.

A real `monitor.daemon.Bed` (the daemon's alarm path) plays a scenario with a manual clock,
journaling as it goes, with events made durable in a real `Outbox`. A fresh core resumed from
the journal must then be indistinguishable from the one that played it live: same state, and
the same events from then on. And the session exported as a recording replays to the events
the bed raised.
"""

from __future__ import annotations

import io
import json
import math
import sqlite3
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from alarms.policy import load_policy
from alarms.recording_io import read_recording, write_recording
from alarms.replay import replay_batches
from kernel.clock import ManualClock
from kernel.vocabulary import AlarmEvent, Param, Phase, Sample, SessionEvent, Step
from monitor.bed import Bed
from monitor.commands import parse_command
from monitor.daemon import Daemon
from monitor.export import session_items
from monitor.journal import Journal
from monitor.outbox import Outbox
from monitor.recovery import resume
from monitor.session import BedCore
from simulators.mqtt_monitor import session_command
from simulators.scenarios import build_scenario
from tests.helpers import bed_settings, free_port

T0 = 1_767_225_600.0
POLICY = load_policy()


class Played:
    """A bed that played part of a scenario, with its journal and outbox."""

    def __init__(self, tmp_path: Path) -> None:
        path = tmp_path / "journal.sqlite"
        self.journal = Journal(path)
        self.outbox = Outbox(path)
        self.clock = ManualClock(T0 - 1)
        self.core = BedCore(POLICY, ward="w1", bed="b1")
        self.events: list[AlarmEvent] = []
        self.bed = Bed(
            self.core, clock=self.clock, tick_grace_s=0.0, emit=self._emit, journal=self.journal
        )

    def _emit(self, events: list[AlarmEvent], _samples: list[Sample]) -> None:
        for event in events:
            assert event.seq is not None
            self.outbox.append(event.seq, event.to_json())
            self.events.append(event)

    def play(self, items: list[Any], *, until: float, acks: bool = False) -> None:
        """Play scenario items up to `until`, as the live bed loop would apply them."""
        for item in items:
            if item.t >= until:
                break
            while math.floor(item.t) > math.floor(self.clock.now()):
                second = math.floor(self.clock.now()) + 1.0
                self.clock.set(second)
                self.bed.tick(second)
            self.clock.set(item.t)
            if isinstance(item, Step):
                if item.event is SessionEvent.DISCHARGE:
                    for code in list(self.core.engine.active):
                        self.ack(code)
                    self.bed.command(json.dumps(override("early_discharge")).encode())
                self.bed.command(json.dumps(session_command(item.event)).encode())
            else:
                # drained by the next tick or command, as the live loop batches them
                self.bed.samples.put(item)
            if acks:
                for code, alarm in list(self.core.engine.active.items()):
                    if alarm.level >= 1 and not alarm.acknowledged:
                        self.ack(code)

    def ack(self, code: str) -> None:
        alarm_id = self.core._alarm_ids[code]
        cmd = {"cmd": "ack", "request_id": f"ack-{code}", "user": "nurse", "alarm_id": alarm_id}
        self.bed.command(json.dumps(cmd).encode())

    def close(self) -> None:
        self.journal.close()
        self.outbox.close()


def override(what: str) -> dict[str, Any]:
    return {"cmd": "override", "request_id": what, "user": "dr", "what": what, "reason": "test"}


@pytest.fixture
def played(tmp_path: Path) -> Iterator[Played]:
    p = Played(tmp_path)
    yield p
    p.close()


def state(core: BedCore) -> dict[str, Any]:
    """Everything a restarted bed must have back."""
    engine = core.engine
    return {
        "phase": core.phase,
        "session": asdict(core.session) if core.session else None,
        "baseline": engine.baseline,
        "active": {
            code: (a.priority, a.acknowledged, a.level, a.latching, a.condition, a.activated_t)
            for code, a in engine.active.items()
        },
        "alarm_ids": dict(core._alarm_ids),
        "audio_paused_until": core.audio_paused_until,
    }


def comparable(events: list[AlarmEvent]) -> list[tuple[Any, ...]]:
    return [(e.t, e.code, e.state, e.alarm_id, e.session_id, e.value) for e in events]


def test_a_resumed_core_is_the_core_that_stopped(played: Played) -> None:
    items = build_scenario("hypertensive-surge", t0=T0, seed=7)
    # stop mid-infusion, after BP_CRISIS (latched, escalating) and an acknowledgement
    played.play(items, until=T0 + 2900, acks=True)
    assert "BP_CRISIS" in played.core.engine.active
    assert any(e.state.value == "acknowledged" for e in played.events)
    resumed = BedCore(POLICY, ward="w1", bed="b1")
    last, replayed, _ = resume(resumed, played.journal)
    assert last is not None
    assert replayed > 1000
    assert state(resumed) == state(played.core)
    assert resumed.phase is Phase.INFUSION

    # and from here on both make the same events
    resumed.seq = played.core.seq
    rest = [i for i in items if T0 + 2900 <= i.t < T0 + 4000]
    stopped_at = played.clock.now()
    before = len(played.events)
    played.play(rest, until=T0 + 4000)
    live = played.events[before:]
    mirror: list[AlarmEvent] = []
    clock = ManualClock(stopped_at)
    bed = Bed(resumed, clock=clock, tick_grace_s=0.0, emit=lambda e, _s: mirror.extend(e))
    for item in rest:
        while math.floor(item.t) > math.floor(clock.now()):
            second = math.floor(clock.now()) + 1.0
            clock.set(second)
            bed.tick(second)
        clock.set(item.t)
        if isinstance(item, Step):
            bed.command(json.dumps(session_command(item.event)).encode())
        else:
            bed.samples.put(item)
    bed.drain()
    assert comparable(mirror) == comparable(live)
    assert live, "nothing happened after the restart: the comparison would be vacuous"


def test_an_idle_bed_has_nothing_to_resume(played: Played) -> None:
    items = build_scenario("normal-session", t0=T0, seed=1)
    played.play(items, until=T0 + 10_600)  # the whole session, discharged
    assert played.core.phase is Phase.NONE
    for second in range(10_601, 10_700):
        played.bed.tick(T0 + second)
    resumed = BedCore(POLICY, ward="w1", bed="b1")
    last, replayed, events = resume(resumed, played.journal)
    # only the last idle moments (the mark trails by the longest delay and the HR hold)
    assert last is not None
    assert 0 < replayed <= 60
    assert events == []
    assert resumed.idle
    assert resumed.session is None
    assert played.journal.prune(T0 + 40 * 86400) > 0  # and old inputs can go


def test_the_exported_session_replays_to_the_events_the_bed_raised(played: Played) -> None:
    items = build_scenario("desaturation", t0=T0, seed=4)
    played.play(items, until=T0 + 10_600)
    (record,) = played.journal.sessions()
    assert record.closed_t is not None
    buffer = io.StringIO()
    write_recording(session_items(played.journal, record), buffer)
    batches = read_recording(io.BytesIO(buffer.getvalue().encode()), file="export.csv")
    replayed = [(e.t, e.code, e.state) for e in replay_batches(batches, POLICY)]
    # what the bed raised for the patient, before the clean-up acks of the test's discharge
    journaled = [
        (e["t"], e["code"], e["state"])
        for e in played.journal.events(record.session_id)
        if e["state"] != "acknowledged"
    ]
    discharge_t = record.info["discharge_t"]
    assert [e for e in replayed if e[0] < discharge_t] == [
        e for e in journaled if e[0] < discharge_t
    ]
    assert any(code == "DESAT_CRITICAL" for _, code, _ in replayed)


def test_infusion_long_reminds_at_45_minutes_and_clears_at_stop() -> None:
    core = BedCore(POLICY, ward="w1", bed="b1")

    def cmd(event: SessionEvent, t: float) -> list[AlarmEvent]:
        outcome = core.command(parse_command(json.dumps(session_command(event)).encode()), t)
        assert outcome.ok, outcome
        return [*outcome.ticked, *outcome.events]

    cmd(SessionEvent.SESSION_START, T0)
    core.command(parse_command(json.dumps(override("bp_pre_gate")).encode()), T0 + 1)
    cmd(SessionEvent.INFUSION_START, T0 + 600)
    before = core.tick(T0 + 600 + 2699)
    assert not [e for e in before if e.code == "INFUSION_LONG"]
    (reminder,) = [e for e in core.tick(T0 + 600 + 2700) if e.code == "INFUSION_LONG"]
    assert (reminder.t, reminder.state.value, reminder.priority.value, reminder.kind.value) == (
        T0 + 3300,
        "active",
        "low",
        "advisory",
    )
    stopped = cmd(SessionEvent.INFUSION_STOP, T0 + 3400)
    assert [(e.code, e.state.value) for e in stopped if e.code == "INFUSION_LONG"] == [
        ("INFUSION_LONG", "cleared")
    ]


def test_the_bed_prunes_its_journal_every_hour(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    journal = Journal(path, keep_days=60 / 86400)  # keep a minute
    outbox = Outbox(path)
    start = 3600.0 * 500_000
    clock = ManualClock(start - 3800)
    core = BedCore(POLICY, ward="w1", bed="b1")
    bed = Bed(core, clock=clock, tick_grace_s=0.0, emit=lambda _e, _s: None, journal=journal)
    try:
        for second in range(-3700, 1):  # an hour and 100 s of idle ticks
            clock.set(start + second)
            bed.tick(start + second)
        kept = [i.t for i in journal.inputs()]
        # pruned at the first tick and an hour later (at -100): what is over a minute older
        # than that went, the rest stays until the next hour
        assert min(kept) == start - 160
        assert len(kept) == 161
    finally:
        journal.close()
        outbox.close()


def feed_hr(bed: Bed, clock: ManualClock, start: float, seconds: range, value: float) -> None:
    """One HR sample a second, each followed by its tick, as the live loop would apply them."""
    for s in seconds:
        clock.set(start + s)
        bed.samples.put(Sample(start + s, Param.HR, value, True, "mon1"))
        bed.tick(start + s)


def test_a_run_in_progress_at_a_crash_is_not_forgotten(tmp_path: Path) -> None:
    # BRADY_SEVERE (HRE <= 40 for 10 s) can raise with no session: a crash 6 s into the run
    # must not restart its delay (the idle mark trails the present)
    path = tmp_path / "journal.sqlite"
    journal, outbox = Journal(path), Outbox(path)
    clock = ManualClock(T0 - 100)
    core = BedCore(POLICY, ward="w1", bed="b1")
    bed = Bed(core, clock=clock, tick_grace_s=0.0, emit=lambda _e, _s: None, journal=journal)
    feed_hr(bed, clock, T0, range(-90, 0), 70.0)
    feed_hr(bed, clock, T0, range(6), 35.0)
    resumed = BedCore(POLICY, ward="w1", bed="b1")
    resume(resumed, journal)
    raised: list[AlarmEvent] = []
    after = Bed(resumed, clock=clock, tick_grace_s=0.0, emit=lambda e, _s: raised.extend(e))
    feed_hr(after, clock, T0, range(6, 12), 35.0)
    (brady,) = [e for e in raised if e.code == "BRADY_SEVERE"]
    assert brady.t == T0 + 10  # as without the crash: the run began at T0
    journal.close()
    outbox.close()


def test_events_a_crash_caught_before_their_durable_write_are_stored_on_restart(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.sqlite"
    journal, outbox = Journal(path), Outbox(path)
    clock = ManualClock(T0 - 100)
    core = BedCore(POLICY, ward="w1", bed="b1")
    lost: list[AlarmEvent] = []
    # the input is journaled, the process dies before its events reach the outbox
    bed = Bed(
        core, clock=clock, tick_grace_s=0.0, emit=lambda e, _s: lost.extend(e), journal=journal
    )
    feed_hr(bed, clock, T0, range(12), 35.0)
    assert [e.code for e in lost] == ["BRADY_SEVERE"]
    assert outbox.last_seq == 0
    journal.close()
    outbox.close()
    resumed = BedCore(POLICY, ward="w1", bed="b1")
    journal = Journal(path)
    _, _, regenerated = resume(resumed, journal)
    journal.close()
    # the same event, with the seq and alarm_id the bed had given it
    assert [(e.code, e.seq, e.alarm_id, e.t) for e in regenerated] == [
        (e.code, e.seq, e.alarm_id, e.t) for e in lost
    ]


def test_a_command_that_is_not_utf8_is_refused_and_not_journaled(played: Played) -> None:
    payload = json.dumps(session_command(SessionEvent.SESSION_START)).encode("utf-16")
    result = played.bed.command(payload)
    assert result == {"request_id": None, "ok": False, "error": "not UTF-8 JSON"}
    assert played.core.session is None
    assert [i for i in played.journal.inputs() if i.kind == "command"] == []


def test_a_second_monitoring_gap_is_announced_not_hidden_behind_the_first() -> None:
    core = BedCore(POLICY, ward="w1", bed="b1")
    first = core.condition(
        "MONITORING_GAP", active=True, now=T0, message="60 s", value=60.0, latching=True
    )
    core.condition("MONITORING_GAP", active=False, now=T0 + 1, message="ignored", latching=True)
    second = core.condition(
        "MONITORING_GAP", active=True, now=T0 + 700, message="600 s", value=600.0, latching=True
    )
    assert [(e.state.value, e.value) for e in first] == [("active", 60.0)]
    assert [(e.state.value, e.value) for e in second] == [("cleared", 60.0), ("active", 600.0)]
    assert second[0].alarm_id == first[0].alarm_id
    assert second[1].alarm_id != first[0].alarm_id


async def test_a_journal_that_cannot_be_replayed_does_not_keep_the_bed_from_starting(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.sqlite"
    journal = Journal(path)
    journal.record("tick", T0, T0)
    # what a core bug or a changed vocabulary would meet on replay
    journal.record("samples", T0 + 1, [[T0 + 1, "PULSE_PRESSURE", 40, True, "mon1", None]])
    journal.close()
    settings = bed_settings(f"mqtt://127.0.0.1:{free_port()}", tmp_path, drivers=[])
    async with Daemon(settings, POLICY, clock=ManualClock(T0 + 60)) as daemon:
        gap = daemon.core.engine.active["MONITORING_GAP"]
        assert gap.latching
        assert daemon.core.session is None
        assert daemon.journal.idle_mark == 2  # not replayed again at the next start
        (event,) = [
            e.payload for e in daemon.outbox.peek() if e.payload["code"] == "MONITORING_GAP"
        ]
        assert "could not be restored" in event["message"]


def test_a_row_of_no_input_kind_is_a_located_error_not_an_assert(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    journal = Journal(path)
    first = journal.record("tick", T0, {"tick": T0})
    journal.close()
    # a journal damaged, or written by something else, holds a kind the bed never writes
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO inputs (t, kind, data) VALUES (?, 'pump', '{}')", (T0 + 1,))
    journal = Journal(path, readonly=True)
    try:
        with pytest.raises(ValueError, match=rf"journal input {first + 1}: kind 'pump'"):
            list(journal.inputs())
    finally:
        journal.close()
