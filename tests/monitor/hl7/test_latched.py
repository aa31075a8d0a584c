"""The gateway's PCD-04 `latched` state from the bed's active list, on a real SQLite queue.

No broker and no receiver: `Gateway.handle` takes the ward's messages as the MQTT side hands
them over, and the queue's file is read back. The end-to-end run (bed, broker, gateway,
receiver) is tests/monitor/hl7/test_gateway.py; this covers the cases it does not reach: a list
handed over twice, a restart, the condition holding again, the alarm clearing.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from monitor.hl7.gateway import Gateway
from monitor.hl7.queue import Hl7Queue
from monitor.hl7.settings import GatewayConfig
from tests.monitor.hl7.conformance import validate

T = 1736850600.0
LIST = "vigil/w1/b1/alarms/active"
ALARM_ID = "w1/b1/DESAT_SEVERE/1736850300000"


def entry(**over: Any) -> dict[str, Any]:
    # DESAT_SEVERE raised at SpO2 84 (< 88), latching (config/alarms.toml)
    return {
        "alarm_id": ALARM_ID, "code": "DESAT_SEVERE", "priority": "high",
        "kind": "physiological", "state": "active", "since": T - 300, "param": "SPO2",
        "value": 84.0, "limit": 88.0, "level": 1, "latched": False, "latched_t": None,
    } | over  # fmt: skip


def gateway(path: Path) -> Gateway:
    config = GatewayConfig.model_validate(
        {"hl7": {"to": "127.0.0.1:9", "ward": "w1", "queue": str(path), "metrics_listen": None}}
    )
    gw = Gateway(config, now=lambda: T + 50)
    gw.queue = Hl7Queue(path, now=lambda: T + 50)
    return gw


def queued(path: Path) -> list[list[list[str]]]:
    """The queued messages, as their segments' fields."""
    with sqlite3.connect(path) as db:
        rows = [r[0] for r in db.execute("SELECT payload FROM messages ORDER BY id")]
    db.close()
    for text in rows:
        validate(text)
    return [[s.split("|") for s in text.split("\r")] for text in rows]


def state_of(message: list[list[str]]) -> tuple[str, str, str]:
    """(phase, alarm state, OBX-14 time) of a PCD-04."""
    obx = [s for s in message if s[0] == "OBX"]
    return obx[2][5], obx[3][5], obx[3][14]


def test_latched_is_sent_once_across_redelivery_and_restart_then_active_again(
    tmp_path: Path,
) -> None:
    path = tmp_path / "hl7-queue.sqlite"
    gw = gateway(path)
    gw.handle(LIST, json.dumps([entry()]).encode())
    assert queued(path) == []  # active, as its start event said: nothing to add
    latched = json.dumps([entry(latched=True, latched_t=T)]).encode()
    gw.handle(LIST, latched)
    gw.handle(LIST, latched)  # an MQTT redelivery
    assert gw.queue is not None
    gw.queue.close()
    # a restart: the retained list comes again
    gw = gateway(path)
    gw.handle(LIST, latched)
    assert gw.stats.duplicates == 0  # known from the file, not even offered again
    # its condition holds again, before anyone acknowledged it
    gw.handle(LIST, json.dumps([entry()]).encode())
    messages = queued(path)
    # 2025-01-14T10:30:00Z, and the gateway's time (T + 50) for the return
    assert [state_of(m) for m in messages] == [
        ("update", "latched", "20250114103000+0000"),
        ("update", "active", "20250114103050+0000"),
    ]
    # the start's identification (below 88 %), no event seq in OBR-3
    obr = [next(s for s in m if s[0] == "OBR") for m in messages]
    assert {tuple(o[3].split("^")[:2]) for o in obr} == {(ALARM_ID, "")}
    assert {next(s for s in m if s[0] == "OBX")[3] for m in messages} == {
        "196674^MDC_EVT_LO_VAL_LT_LIM^MDC"
    }
    # ended again (a new time): latched again; then cleared by an acknowledgement (its end
    # event goes its own way): the list no longer has it, and the file forgets it
    gw.handle(LIST, json.dumps([entry(latched=True, latched_t=T + 60)]).encode())
    assert [state_of(m)[1] for m in queued(path)] == ["latched", "active", "latched"]
    assert gw.queue is not None
    assert gw.queue.note("latched:w1/b1") == json.dumps({ALARM_ID: T + 60})
    gw.handle(LIST, b"[]")
    assert gw.queue.note("latched:w1/b1") is None
    assert len(queued(path)) == 3
    gw.queue.close()
