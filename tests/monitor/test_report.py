"""`vigil report`: a real journal of the hypertensive-surge session, drawn as PNG and HTML.

The journal is made the way the daemon makes it, without a broker: a `Bed` over a `BedCore`
with a `Journal`, its alarm events written to the `Outbox` (hence the journal's `events`
table) as `WardLink.publish_alarm` writes them, a `ManualClock`, and the scenario's session
steps sent as nurse commands.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from alarms.policy import Policy, load_policy
from kernel.clock import ManualClock
from kernel.vocabulary import AlarmEvent, Param, Sample, ScenarioItem, SessionEvent, Step
from monitor.bed import Bed
from monitor.cli import main
from monitor.journal import Journal
from monitor.outbox import Outbox
from monitor.report import (
    HONESTY,
    ReportData,
    ReportError,
    build_report,
    find_session,
    render_figure,
    report_facts,
)
from monitor.session import BedCore
from simulators.mqtt_monitor import session_command
from simulators.scenarios import build_scenario, scenario_phases
from tests.helpers import run_vigil

T0 = 1_764_230_400.0  # 2025-11-27T08:00:00Z
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class Ward:
    """A bed with a journal and an outbox in one file, driven by a manual clock."""

    def __init__(self, path: Path, start: float, policy: Policy | None = None) -> None:
        self.path = path
        self.outbox = Outbox(path)
        self.journal = Journal(path)
        core = BedCore(policy or load_policy(), ward="w1", bed="b1", seq=self.outbox.last_seq)
        self.clock = ManualClock(start)
        self.bed = Bed(core, clock=self.clock, tick_grace_s=0.0, emit=self._emit,
                       journal=self.journal)  # fmt: skip
        self.next_tick = math.ceil(start)

    def _emit(self, events: list[AlarmEvent], _samples: list[Sample]) -> None:
        for event in events:  # as WardLink.publish_alarm does
            assert event.seq is not None
            self.outbox.append(event.seq, event.to_json())

    def until(self, t: float) -> None:
        """Ticks on the whole seconds up to `t` (docs/ALARMS.md Reading 1: before rows at `t`)."""
        while self.next_tick <= t:
            self.bed.drain()
            self.clock.set(self.next_tick)
            self.bed.tick(self.next_tick)
            self.next_tick += 1

    def command(self, t: float, cmd: dict[str, Any]) -> dict[str, Any]:
        self.until(t)
        self.clock.set(t)
        return self.bed.command(json.dumps(cmd).encode())

    def play(self, items: list[ScenarioItem]) -> None:
        for item in items:
            if isinstance(item, Step):
                if item.event is SessionEvent.DISCHARGE:
                    self.acknowledge_latched(item.t - 1.0)
                result = self.command(item.t, session_command(item.event))
                assert result["ok"], result
            else:
                self.until(item.t)
                self.clock.set(item.t)
                self.bed.samples.put(item)
        self.bed.drain()

    def acknowledge_latched(self, t: float) -> None:
        """As the nurse must before a discharge (docs/PROTOCOL.md step 5), by code at `t`."""
        for alarm in self.bed.core.active_alarms():
            if alarm["latched"] and alarm["state"] == "active":
                ack = {"cmd": "ack", "request_id": "a", "user": "nurse.c", "code": alarm["code"]}
                assert self.command(t, ack)["ok"]

    def close(self) -> None:
        self.journal.close()
        self.outbox.close()


@pytest.fixture(scope="module")
def surge(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The hypertensive-surge session's journal and session id."""
    path = tmp_path_factory.mktemp("report") / "journal.sqlite"
    ward = Ward(path, T0 - 1.0)
    ward.play(build_scenario("hypertensive-surge", t0=T0, seed=1))
    [record] = ward.journal.sessions()
    ward.close()
    return path, record.session_id


def vital(t: float, param: Param, value: float) -> Sample:
    return Sample(t, param, value, valid=True, device_id="mon1")


def open_journal(path: Path) -> Journal:
    return Journal(path)


def test_png(surge: tuple[Path, str], tmp_path: Path) -> None:
    path, sid = surge
    out = tmp_path / "x.png"
    assert main(["report", sid[:8], "--journal", str(path), "--out", str(out)]) == 0
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 30_000


def test_png_through_the_console_script(surge: tuple[Path, str], tmp_path: Path) -> None:
    path, sid = surge
    out = tmp_path / "x.png"
    done = run_vigil("report", sid, "--journal", path, "--out", out)
    assert done.returncode == 0, done.stderr
    assert sid in done.stdout
    assert out.read_bytes().startswith(PNG_SIGNATURE)


def test_html(surge: tuple[Path, str], tmp_path: Path) -> None:
    path, sid = surge
    out = tmp_path / "x.html"
    assert main(["report", sid[:6], "--journal", str(path), "--out", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "SIM-0001" in page
    assert "35 mg" in page
    assert "70 kg" in page
    assert "5.25 mL/h" in page
    assert "BP_CRISIS" in page
    assert HONESTY in page
    match = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert match is not None
    assert base64.b64decode(match.group(1)).startswith(PNG_SIGNATURE)
    assert "http://" not in page
    assert "https://" not in page  # self-contained


def test_report_data_matches_the_scenario(surge: tuple[Path, str]) -> None:
    path, sid = surge
    journal = open_journal(path)
    try:
        data = build_report(journal, sid[:4])
        events = journal.events(sid)
    finally:
        journal.close()
    steps = scenario_phases("hypertensive-surge", T0)
    assert [(p.name, p.start, p.end) for p in data.phases] == [
        ("pre", steps[SessionEvent.SESSION_START], steps[SessionEvent.INFUSION_START]),
        ("infusion", steps[SessionEvent.INFUSION_START], steps[SessionEvent.INFUSION_STOP]),
        ("post", steps[SessionEvent.INFUSION_STOP], steps[SessionEvent.DISCHARGE]),
    ]
    assert data.discharge_t == steps[SessionEvent.DISCHARGE]
    assert data.discharge_user == "simulator"
    assert data.early_discharge_override is None
    active = [e for e in events if e["state"] == "active"]
    assert [(a.t, a.code, a.priority) for a in data.alarms] == [
        (e["t"], e["code"], e["priority"]) for e in active
    ]
    assert {a.code for a in data.alarms} >= {"BP_CRISIS", "BP_HIGH", "BP_RISE"}
    crisis = next(a for a in data.alarms if a.code == "BP_CRISIS")
    assert crisis.priority == "high"
    assert len(crisis.escalated) == 3
    # latched: cleared by the nurse's acknowledgement a second before the discharge
    assert crisis.acknowledged_t == steps[SessionEvent.DISCHARGE] - 1.0
    assert crisis.cleared_t == steps[SessionEvent.DISCHARGE] - 1.0
    assert data.alarm_counts["BP_CRISIS"] == 1
    samples = [
        s for s in build_scenario("hypertensive-surge", t0=T0, seed=1) if isinstance(s, Sample)
    ]
    for param in (Param.NIBP_SYS, Param.NIBP_DIA, Param.HR, Param.SPO2):
        expected = [s for s in samples if s.param is param]
        series = data.series[param]
        assert series.t == tuple(s.t for s in expected)
        assert series.value == tuple(s.value for s in expected)
    assert len(data.series[Param.NIBP_SYS].t) == 18  # 2 pre + 8 infusion + 8 post
    pre = [
        (s.param, s.value) for s in samples if s.t < steps[SessionEvent.INFUSION_START]
    ]  # fmt: skip
    sys_pre = sorted(v for p, v in pre if p is Param.NIBP_SYS)
    # the engine's own baseline, journaled with the session (docs/ALARMS.md "Baseline": the median
    # of the pre determinations, here two)
    assert data.baseline.source == "session baseline"
    assert data.baseline.sys == sum(sys_pre) / 2
    assert data.baseline.determinations == 2


def report_at_utc_plus_1(surge: tuple[Path, str]) -> ReportData:
    """The surge session's report, its times shown at UTC+01:00."""
    path, sid = surge
    journal = open_journal(path)
    try:
        return build_report(journal, sid, tz=dt.timezone(dt.timedelta(hours=1)))
    finally:
        journal.close()


def test_facts(surge: tuple[Path, str]) -> None:
    data = report_at_utc_plus_1(surge)
    facts = dict(report_facts(data))
    assert facts["Patient"] == "SIM-0001"
    assert facts["Weight"] == "70 kg"
    assert facts["Dose"].startswith("35 mg (0.5 mg/kg) at 10 mg/mL")
    assert facts["Pump rate"] == "5.25 mL/h"
    assert facts["Opened"] == "2025-11-27T09:00:00+01:00 by simulator"
    assert facts["Infusion"] == (
        "2025-11-27T09:10:00+01:00 to 2025-11-27T09:50:00+01:00, 40 min"
    )  # fmt: skip
    assert facts["Discharge"].startswith("2025-11-27T11:55:00+01:00 by simulator")
    assert "no override needed" in facts["Discharge"]
    assert facts["Baseline (session baseline)"].startswith("BP 124/")
    assert facts["Overrides"] == "none"
    assert "BP_CRISIS x1" in facts["Alarms (times active)"]
    assert facts["Time zone"] == "UTC+01:00"
    assert facts["Note"] == HONESTY


def test_figure_is_labelled(surge: tuple[Path, str]) -> None:
    data = report_at_utc_plus_1(surge)
    fig = render_figure(data)
    bp, hr, spo2, lane, _text = fig.axes[:5]
    assert "mmHg" in bp.get_ylabel()
    assert "/min" in hr.get_ylabel()
    assert "%" in spo2.get_ylabel()
    assert lane.get_xlabel().startswith("minutes since 09:00:00 on 2025-11-27 (UTC+01:00)")
    texts = [t.get_text() for t in bp.texts]
    assert any(t.startswith("pre") for t in texts)
    assert any(t.startswith("infusion") for t in texts)
    assert any(t.startswith("post") for t in texts)
    assert [t.get_text() for t in lane.get_yticklabels()][-1] == "SYMPATHOMIMETIC_SURGE"
    legend = bp.get_legend()
    assert legend is not None
    assert "NIBP systolic" in [t.get_text() for t in legend.get_texts()]
    assert HONESTY in fig.get_suptitle()


def test_unknown_session(surge: tuple[Path, str], tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    path, sid = surge
    out = tmp_path / "x.png"
    assert main(["report", "nosuch", "--journal", str(path), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "no session 'nosuch'" in err
    assert sid in err
    assert not out.exists()


def test_no_journal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "none.sqlite"
    assert main(["report", "x", "--journal", str(missing), "--out", str(tmp_path / "x.png")]) == 2
    assert "no journal" in capsys.readouterr().err
    assert not missing.exists()  # a report never creates a journal


def test_journal_from_the_bed_config(surge: tuple[Path, str], tmp_path: Path) -> None:
    path, sid = surge
    config = tmp_path / "bed.toml"
    config.write_text(
        f'[bed]\nward = "w1"\nbed = "b1"\n[journal]\npath = "{path}"\n', encoding="utf-8"
    )
    out = tmp_path / "x.png"
    assert main(["report", sid, "--config", str(config), "--out", str(out)]) == 0
    assert out.read_bytes().startswith(PNG_SIGNATURE)


def test_config_and_journal_exclude_each_other(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["report", "x", "--config", "c.toml", "--journal", "j", "--out", "x.png"])
    assert exc.value.code == 2


def test_other_output_format_refused(surge: tuple[Path, str], tmp_path: Path) -> None:
    path, sid = surge
    assert main(["report", sid, "--journal", str(path), "--out", str(tmp_path / "x.pdf")]) == 2


def test_without_matplotlib(surge: tuple[Path, str], tmp_path: Path) -> None:
    path, sid = surge
    out = tmp_path / "x.png"
    script = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from monitor.cli import main\n"
        f"sys.exit(main(['report', {sid!r}, '--journal', {str(path)!r}, '--out', {str(out)!r}]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 2
    assert "pip install 'vigil[report]'" in done.stderr
    assert not out.exists()


def test_overrides_early_discharge_and_ambiguous_prefix(tmp_path: Path) -> None:
    """Two short sessions: the first discharged early by override, the second left open."""
    ward = Ward(tmp_path / "journal.sqlite", T0 - 1.0)
    user = {"user": "nurse.a"}
    ward.play([Step(T0, SessionEvent.SESSION_START)])
    for i in range(1, 200):
        ward.play([vital(T0 + i, Param.HR, 70.0), vital(T0 + i, Param.SPO2, 98.0)])
        if i in (20, 40):
            ward.play([vital(T0 + i, Param.NIBP_SYS, 120.0 + i),
                       vital(T0 + i, Param.NIBP_DIA, 80.0)])  # fmt: skip
        if i == 60:  # the two cuff readings (140, 160) raised BP_PRE_GATE
            gate = {"cmd": "override", "request_id": "g", "user": "dr.b", "what": "bp_pre_gate",
                    "reason": "white-coat hypertension, known"}  # fmt: skip
            assert ward.command(T0 + i, gate)["ok"]
            assert ward.command(T0 + i, {"cmd": "start_infusion", "request_id": "s", **user})["ok"]
        if i == 120:
            assert ward.command(T0 + i, {"cmd": "stop_infusion", "request_id": "t", **user})["ok"]
    refused = ward.command(T0 + 200, {"cmd": "discharge", "request_id": "d0", **user})
    assert not refused["ok"]
    override = {"cmd": "override", "request_id": "o", "user": "dr.b", "what": "early_discharge",
                "reason": "patient alert, escorted home"}  # fmt: skip
    assert ward.command(T0 + 201, override)["ok"]
    assert ward.command(T0 + 202, {"cmd": "discharge", "request_id": "d1", "user": "nurse.c"})["ok"]
    ward.play([Step(T0 + 300, SessionEvent.SESSION_START), vital(T0 + 301, Param.HR, 71.0)])
    first, second = ward.journal.sessions()
    try:
        data = build_report(ward.journal, first.session_id)
        with pytest.raises(ReportError, match="ambiguous") as exc:
            find_session(ward.journal, "")
        assert first.session_id in str(exc.value)
        assert second.session_id in str(exc.value)
        still_open = build_report(ward.journal, second.session_id)
    finally:
        ward.close()
    assert data.discharge_t == T0 + 202
    assert data.discharge_user == "nurse.c"
    early = data.early_discharge_override
    assert early is not None
    assert (early.user, early.reason) == ("dr.b", "patient alert, escorted home")
    facts = report_facts(data)
    discharge = dict(facts)["Discharge"]
    assert "by nurse.c" in discharge
    assert "EARLY discharge by override of dr.b: patient alert, escorted home" in discharge
    overrides = [value for label, value in facts if label == "Override"]
    assert len(overrides) == 2
    assert overrides[0].startswith("bp_pre_gate: white-coat hypertension, known (by dr.b, ")
    assert overrides[1].startswith("early_discharge: patient alert, escorted home (by dr.b, ")
    assert "BP_PRE_GATE" in {a.code for a in data.alarms}
    assert [p.name for p in data.phases] == ["pre", "infusion", "post"]
    assert data.baseline.sys == 150.0  # median of 140 and 160
    assert data.series[Param.HR].t[-1] == T0 + 199  # nothing from the next session
    assert still_open.discharge_t is None
    assert [p.name for p in still_open.phases] == ["pre"]
    assert dict(report_facts(still_open))["Discharge"].startswith("not discharged")


def test_every_override_and_a_discharge_without_vitals(tmp_path: Path) -> None:
    """issue 11 items 10 and 11: the monitors went away after the infusion; the report names
    every accepted override (one never needed) and what the discharge went through on."""
    ward = Ward(tmp_path / "journal.sqlite", T0 - 1.0)
    nurse = {"user": "nurse.a"}

    def override(t: float, what: str, reason: str) -> dict[str, Any]:
        cmd = {"cmd": "override", "request_id": what, "user": "dr.b", "what": what,
               "reason": reason}  # fmt: skip
        return ward.command(t, cmd)

    ward.play([Step(T0, SessionEvent.SESSION_START)])
    for i in range(1, 121):
        ward.play([vital(T0 + i, Param.HR, 70.0), vital(T0 + i, Param.SPO2, 98.0)])
        if i in (20, 40, 50):
            sys_, dia = (120.0, 80.0) if i == 50 else (150.0, 95.0)
            ward.play([vital(T0 + i, Param.NIBP_SYS, sys_), vital(T0 + i, Param.NIBP_DIA, dia)])
        if i == 45:  # BP_PRE_GATE since the 40 s reading
            assert override(T0 + i, "bp_pre_gate", "rechecked by hand")["ok"]
        if i == 60:  # the 50 s reading opened the gate: the override is not needed
            assert ward.command(T0 + i, {"cmd": "start_infusion", "request_id": "s", **nurse})["ok"]
    assert ward.command(T0 + 120, {"cmd": "stop_infusion", "request_id": "t", **nurse})["ok"]
    # nothing more from the monitors: SPO2_NO_DATA and HR_NO_DATA 30 s later
    refused = ward.command(T0 + 200, {"cmd": "discharge", "request_id": "d0", **nurse})
    assert not refused["ok"]
    assert "override what=discharge_without_vitals" in refused["error"]
    assert "override what=early_discharge" in refused["error"]
    assert override(T0 + 201, "early_discharge", "transfer to ward 2")["ok"]
    assert override(T0 + 202, "discharge_without_vitals", "monitor failed, vitals by hand")["ok"]
    assert ward.command(T0 + 203, {"cmd": "discharge", "request_id": "d1", **nurse})["ok"]
    [record] = ward.journal.sessions()
    try:
        data = build_report(ward.journal, record.session_id, tz=dt.UTC)
    finally:
        ward.close()
    facts = report_facts(data)
    discharge = dict(facts)["Discharge"]
    assert "no override needed" not in discharge
    assert "EARLY discharge by override of dr.b: transfer to ward 2" in discharge
    assert (
        "discharge WITHOUT VITALS by override of dr.b: monitor failed, vitals by hand "
        "(discharge with SPO2_NO_DATA is active; HR_NO_DATA is active)"
    ) in discharge
    assert [value for label, value in facts if label == "Override"] == [
        (
            "bp_pre_gate: rechecked by hand (by dr.b, 2025-11-27T08:00:45+00:00); "
            "given for BP_PRE_GATE active; not used (the step did not need it)"
        ),
        (
            "early_discharge: transfer to ward 2 (by dr.b, 2025-11-27T08:03:21+00:00); "
            "given for observation 1 min < 120 min; "
            "let through discharge with observation 1 min < 120 min at 2025-11-27T08:03:23+00:00"
        ),
        (
            "discharge_without_vitals: monitor failed, vitals by hand "
            "(by dr.b, 2025-11-27T08:03:22+00:00); "
            "given for SPO2_NO_DATA is active; HR_NO_DATA is active; "
            "let through discharge with SPO2_NO_DATA is active; HR_NO_DATA is active "
            "at 2025-11-27T08:03:23+00:00"
        ),
    ]


def test_the_reports_baseline_is_the_engines_for_a_policy_with_its_own_window(
    tmp_path: Path,
) -> None:
    """docs/ALARMS.md "Baseline": HR0 is the median HRE over the policy's window of `pre`.

    With a 120 s window and HR 60 /min for the first 180 s of `pre`, then 90 /min for the last
    120 s, HR0 is 90 (a fixed 300 s window would say 60). The report takes it by replaying the
    session through the core, not from the record (removed here) nor re-derived.
    """
    shipped = load_policy()
    policy = shipped.model_copy(
        update={"baseline": shipped.baseline.model_copy(update={"window_s": 120.0})}
    )
    ward = Ward(tmp_path / "journal.sqlite", T0 - 1.0, policy)
    user = {"user": "nurse.a"}
    ward.play([Step(T0, SessionEvent.SESSION_START)])
    for i in range(1, 300):
        ward.play([vital(T0 + i, Param.HR, 60.0 if i < 180 else 90.0),
                   vital(T0 + i, Param.SPO2, 98.0)])  # fmt: skip
        if i in (20, 40):
            ward.play([vital(T0 + i, Param.NIBP_SYS, 120.0), vital(T0 + i, Param.NIBP_DIA, 80.0)])
    assert ward.command(T0 + 300, {"cmd": "start_infusion", "request_id": "s", **user})["ok"]
    engine = ward.bed.core.engine.baseline
    assert engine is not None
    assert engine.hr0 == 90.0
    (record,) = ward.journal.sessions()
    ward.close()
    with sqlite3.connect(tmp_path / "journal.sqlite") as db:
        db.execute("UPDATE sessions SET info = json_remove(info, '$.baseline')")
    journal = open_journal(tmp_path / "journal.sqlite")
    try:
        assert "baseline" not in journal.sessions()[0].info
        data = build_report(journal, record.session_id, policy=policy)
        shipped_window = build_report(journal, record.session_id)
    finally:
        journal.close()
    b = data.baseline
    assert (b.sys, b.dia, b.hr, b.spo2, b.determinations) == (
        engine.sys0, engine.dia0, engine.hr0, engine.spo2_0, engine.pre_determinations,
    )  # fmt: skip
    assert b.hr == 90.0
    # replayed with the shipped policy's 300 s window, the same inputs give the other HR0
    assert shipped_window.baseline.hr == 60.0
