"""`vigil report`: the alarm table reads as a person's words; the alarm bars stay on the chart.

The session is journaled the way the daemon journals it (`Ward` of test_report.py: a `Bed`
over a `BedCore` with a `Journal` and an `Outbox`). Its SpO2 stops 0.0495 s past a whole
second, so the bed's whole-second ticks find the data gap at a fraction of a second
(`SPO2_NO_DATA` "for 30.9505 s"), and one monitor is lost with the driver's exception text in
its message, as journals written before the daemon worded it for a person hold it.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.collections import LineCollection
from matplotlib.lines import Line2D

from kernel.vocabulary import Param, SessionEvent, Step, SystemAlarm
from monitor.cli import main
from monitor.journal import Journal
from monitor.outbox import Outbox
from monitor.report import build_report, person_message, render_figure
from tests.monitor.test_report import T0, Ward, vital

DEVICE_ERROR = (
    "no data from ox: DeviceError: ox: port /tmp/vigil-ox: device reports readiness to read "
    "but returned no data (device disconnected or multiple access on port?)"
)
USER = {"user": "nurse.a"}
DISCHARGE_AT = 1500.0


def discharged_session(path: Path) -> str:
    """A 25-minute session with an SpO2 gap and a lost oximeter; discharged at +1500 s."""
    ward = Ward(path, T0 - 1.0)
    ward.play([Step(T0, SessionEvent.SESSION_START)])
    for i in range(1, int(DISCHARGE_AT)):
        if i == 400:
            assert ward.command(T0 + i, {"cmd": "start_infusion", "request_id": "s", **USER})["ok"]
        if i == 650:
            ward.until(T0 + i)
            ward.bed.condition(
                SystemAlarm.DEVICE_DISCONNECTED, active=True, param="ox", message=DEVICE_ERROR
            )
        if i == 1000:
            assert ward.command(T0 + i, {"cmd": "stop_infusion", "request_id": "t", **USER})["ok"]
        if i % 300 == 20:
            ward.play([vital(T0 + i, Param.NIBP_SYS, 120.0), vital(T0 + i, Param.NIBP_DIA, 80.0)])
        if i < 500 or i >= 700:  # both monitors silent for 200 s
            ward.play([vital(T0 + i, Param.HR, 70.0), vital(T0 + i + 0.0495, Param.SPO2, 98.0)])
    early = {"cmd": "override", "request_id": "o", "user": "dr.b", "what": "early_discharge",
             "reason": "escorted home"}  # fmt: skip
    assert ward.command(T0 + DISCHARGE_AT - 0.5, early)["ok"]
    assert ward.command(T0 + DISCHARGE_AT, {"cmd": "discharge", "request_id": "d", **USER})["ok"]
    [record] = ward.journal.sessions()
    ward.close()
    return record.session_id


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("report-alarms") / "journal.sqlite"
    return path, discharged_session(path)


class Cells(HTMLParser):
    """The visible text of each row of the page's last table (the alarms)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, _attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in {"td", "th"}:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in {"td", "th"} and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def alarm_rows(page: str) -> dict[str, str]:
    """code -> the message cell's visible text."""
    parser = Cells()
    parser.feed(page)
    header, *rows = parser.tables[-1]
    at = header.index("message")
    return {row[1]: row[at] for row in rows}


def test_the_alarm_table_shows_a_persons_message_with_whole_numbers(
    stored: tuple[Path, str], tmp_path: Path
) -> None:
    path, sid = stored
    # the journal holds the raw texts the table must not show
    messages = {e["code"]: e["message"] for e in build_events(path, sid) if e["state"] == "active"}
    assert messages["SPO2_NO_DATA"] == "no valid SPO2 for 30.9505 s"
    assert messages["DEVICE_DISCONNECTED"] == DEVICE_ERROR
    out = tmp_path / "r.html"
    assert main(["report", sid, "--journal", str(path), "--out", str(out)]) == 0
    rows = alarm_rows(out.read_text(encoding="utf-8"))
    assert rows["SPO2_NO_DATA"] == "no valid SPO2 for 31 s"
    assert rows["DEVICE_DISCONNECTED"] == "no data from ox"
    shown = " ".join(rows.values())
    assert "Error" not in shown
    assert not re.search(r"\d\.\d", shown), shown


def build_events(path: Path, sid: str) -> list[dict[str, Any]]:
    j = Journal(path, readonly=True)
    try:
        return j.events(sid)
    finally:
        j.close()


def test_alarm_bars_stop_at_the_discharge(stored: tuple[Path, str], tmp_path: Path) -> None:
    path, sid = stored
    # events of the session after its discharge: the oximeter's alarm cleared ten minutes
    # later, and one raised after it, both carrying the session's id
    copy = tmp_path / "journal.sqlite"
    copy.write_bytes(path.read_bytes())
    outbox, journal = Outbox(copy), Journal(copy)
    [active] = [
        e for e in journal.events(sid)
        if e["code"] == "DEVICE_DISCONNECTED" and e["state"] == "active"
    ]  # fmt: skip
    later = [
        active | {"state": "cleared", "t": T0 + DISCHARGE_AT + 600, "message": "ox: data again"},
        active | {"code": "WARD_LINK_DOWN", "alarm_id": "w1/b1/WARD_LINK_DOWN/1",
                  "t": T0 + DISCHARGE_AT + 300, "message": "ward broker out of reach"},
    ]  # fmt: skip
    for event in later:
        seq = outbox.last_seq + 1
        outbox.append(seq, event | {"seq": seq})
    try:
        data = build_report(journal, sid)
    finally:
        journal.close()
        outbox.close()
    fig = render_figure(data)
    lane = next(ax for ax in fig.axes if ax.get_ylabel() == "alarms")
    lo, hi = lane.get_xlim()
    assert hi == pytest.approx(DISCHARGE_AT / 60.0)
    xs: list[float] = []
    for artist in lane.get_children():
        if isinstance(artist, LineCollection):
            xs += [float(x) for seg in artist.get_segments() for x in seg[:, 0]]
        elif isinstance(artist, Line2D):
            xs += np.asarray(artist.get_xdata(), dtype=float).tolist()
    assert xs, "nothing drawn in the alarm lane"
    assert all(lo <= x <= hi for x in xs), sorted(xs)[-3:]
    # the oximeter's bar reaches the discharge and is marked as going on past it
    ends = [
        line for line in lane.get_lines() if line.get_marker() == ">"
    ]  # fmt: skip
    assert [np.asarray(line.get_xdata(), dtype=float)[0] for line in ends] == [pytest.approx(hi)]
    assert "WARD_LINK_DOWN" not in [t.get_text() for t in lane.get_yticklabels()]


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        ("no valid SPO2 for 30.9505 s", "no valid SPO2 for 31 s"),
        ("NIBP SYS 151, median HRE 600 s 141.5", "NIBP SYS 151, median HRE 600 s 142"),
        ("ward broker out of reach for 10 s: MqttError: [Errno 111] Connection refused",
         "ward broker out of reach for 10 s"),
        (("no data from mon1: DeviceError: mon1: broker 10.0.0.5:1883: [Errno 111] refused; "
          "ox: DeviceError: ox: port /dev/ttyUSB0: cannot open: [Errno 2] no such file"),
         "no data from mon1; ox"),
        (("state before the restart could not be restored (ValueError: 'X' is not a valid "
          "Param): session and alarms start afresh"),
         "state before the restart could not be restored: session and alarms start afresh"),
        # clock times, addresses and whole numbers are left as they are
        ("not monitored for 600 s, from 2025-11-27T08:00:00.250+00:00 to 10.0.0.5",
         "not monitored for 600 s, from 2025-11-27T08:00:00.250+00:00 to 10.0.0.5"),
        ("no data from monitor ox (port /dev/ttyUSB0)",
         "no data from monitor ox (port /dev/ttyUSB0)"),
    ],
)  # fmt: skip
def test_person_message(message: str, shown: str) -> None:
    assert person_message(message) == shown
