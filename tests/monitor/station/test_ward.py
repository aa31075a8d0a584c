"""The station's ward state and its config, without a broker or a browser (real SQLite).

Payloads are written here by hand as docs/ARCHITECTURE.md "MQTT" describes them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kernel.configfile import ConfigError
from monitor.station.settings import load_station_config
from monitor.station.store import StationStore
from monitor.station.ward import WardState

P = "vigil/w1/b1"
ACTIVE = [
    {
        "alarm_id": "a1",
        "code": "DESAT",
        "priority": "medium",
        "kind": "physiological",
        "state": "active",
        "since": 1000.0,
        "param": "SPO2",
        "value": 89.0,
        "limit": 92.0,
    }
]


def _b(x: object) -> bytes:
    return json.dumps(x).encode()


def test_bad_payloads_are_dropped_and_counted_and_the_ward_goes_on(tmp_path: Path) -> None:
    ward = WardState(StationStore(tmp_path / "s.sqlite"))
    assert ward.handle(f"{P}/vitals", b"{not json", 1.0) == set()
    assert ward.handle(f"{P}/alarms/active", _b({"not": "a list"}), 1.0) == set()
    assert ward.handle(f"{P}/session", _b({"phase": "nonsense", "t": 1}), 1.0) == set()
    assert ward.handle("vigil/w1/b1/unknown", b"{}", 1.0) == set()
    assert ward.dropped == {"vitals": 1, "alarms/active": 1, "session": 1, "topic": 1}
    sample = {"t": 5.0, "param": "HR", "value": 71.0, "valid": True, "device_id": "m"}
    assert ward.handle(f"{P}/vitals", _b(sample), 6.0) == {"w1/b1"}
    view = ward.view("w1/b1")
    assert view is not None
    assert view["vitals"]["HR"] == {"t": 5.0, "rx": 6.0, "value": 71.0}


def test_an_ack_is_pending_until_the_bed_confirms_it_and_a_refusal_ends_it(
    tmp_path: Path,
) -> None:
    ward = WardState(StationStore(tmp_path / "s.sqlite"))
    ward.handle(f"{P}/alarms/active", _b(ACTIVE), 1.0)
    ward.sent("w1/b1", {"cmd": "ack", "request_id": "r1", "user": "anna", "alarm_id": "a1"}, 2.0)
    view = ward.view("w1/b1")
    assert view is not None
    assert view["active"][0]["pending"] == {"user": "anna", "rx": 2.0}
    # the bed accepts: still pending, until its `acknowledged` event
    ward.handle(f"{P}/cmd/result", _b({"request_id": "r1", "ok": True}), 2.1)
    assert ward.view("w1/b1")["active"][0]["pending"] is not None  # type: ignore[index]
    event = {
        "t": 1001.0,
        "code": "DESAT",
        "priority": "medium",
        "kind": "physiological",
        "state": "acknowledged",
        "phase": "infusion",
        "alarm_id": "a1",
        "user": "anna",
        "bed": "w1/b1",
    }
    ward.handle(f"{P}/alarms", _b(event), 2.2)
    acked = [{**ACTIVE[0], "state": "acknowledged"}]
    ward.handle(f"{P}/alarms/active", _b(acked), 2.2)
    alarm = ward.view("w1/b1")["active"][0]  # type: ignore[index]
    assert alarm["pending"] is None
    assert (alarm["acked_by"], alarm["acked_t"]) == ("anna", 1001.0)
    # a refused command: no longer pending, the bed's reason kept for the pages
    ward.sent("w1/b1", {"cmd": "start_infusion", "request_id": "r2", "user": "anna"}, 3.0)
    refusal = {"request_id": "r2", "ok": False, "error": "phase is not pre"}
    assert ward.handle(f"{P}/cmd/result", _b(refusal), 3.1) == {"w1/b1"}
    assert "r2" not in ward.pending
    assert ward.results[-1]["result"]["error"] == "phase is not pre"
    assert ward.results[-1]["user"] == "anna"
    # another console's answer is not ours to show
    assert ward.handle(f"{P}/cmd/result", _b({"request_id": "x", "ok": True}), 4.0) == set()


def test_a_restarted_station_has_the_ward_it_had(tmp_path: Path) -> None:
    store = StationStore(tmp_path / "s.sqlite")
    ward = WardState(store)
    ward.handle(f"{P}/status", _b({"status": "offline", "ward": "w1", "bed": "b1"}), 1.0)
    ward.handle(f"{P}/alarms/active", _b(ACTIVE), 1.0)
    sample = {"t": 5.0, "param": "SPO2", "value": 89.0, "valid": True, "device_id": "m"}
    ward.handle(f"{P}/vitals", _b(sample), 6.0)
    store.close()
    again = WardState(StationStore(tmp_path / "s.sqlite"))
    view = again.view("w1/b1")
    assert view is not None
    assert view["status"] == "offline"
    assert [a["code"] for a in view["active"]] == ["DESAT"]
    assert view["vitals"]["SPO2"]["value"] == 89.0
    # a bed retired (its retained status cleared) is gone
    again.handle(f"{P}/status", b"", 7.0)
    assert again.view("w1/b1") is None


def test_the_config_is_refused_with_located_reasons(tmp_path: Path) -> None:
    path = tmp_path / "station.toml"
    path.write_text(
        '[station]\nlisten = "nowhere"\n[extra]\n'
        '[[users]]\nname = "anna"\nrole = "boss"\npassword_hash = "plain"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_station_config(path)
    assert [p.key for p in caught.value.problems] == ["extra"]
    path.write_text(
        '[station]\nlisten = "nowhere"\n'
        '[[users]]\nname = "anna"\nrole = "boss"\npassword_hash = "plain"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_station_config(path)
    keys = sorted(p.key for p in caught.value.problems)
    assert keys == ["station.listen", "users[0].password_hash", "users[0].role"], keys
    assert "expected HOST:PORT, got 'nowhere'" in caught.value.problems[0].reason
    path.write_text('[station]\nprefix = "site/+"\n')
    with pytest.raises(ConfigError) as caught:
        load_station_config(path)
    assert [(p.key, p.reason) for p in caught.value.problems] == [
        ("station.prefix", "not a topic prefix (no wildcards, no trailing /)")
    ]


def test_the_database_is_beside_the_file_and_the_command_line_listen_wins(tmp_path: Path) -> None:
    path = tmp_path / "station.toml"
    path.write_text('[station]\nlisten = "127.0.0.1:1"\ndatabase = "st.sqlite"\nprefix = "s/v"\n')
    config = load_station_config(path, listen="127.0.0.1:0")
    s = config.station
    assert (s.database, s.listen, s.prefix) == (tmp_path / "st.sqlite", "127.0.0.1:0", "s/v")
