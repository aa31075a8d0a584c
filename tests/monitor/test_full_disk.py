"""A full disk is a technical alarm, not a crash (issue 17, item 4).

The disk is filled the way SQLite itself reports it: `PRAGMA max_page_count` caps the database
at the pages it has, so the next write that needs a page fails with SQLITE_FULL ("database or
disk is full"), exactly the error a full file system gives.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from monitor.journal import Journal
from monitor.outbox import Outbox
from monitor.settings import Settings
from tests.helpers import BrokerProcess, bed_settings, running_bed

PREFIX = "vigil/w1/b1"
TOPIC = "monitors/mon1/samples"


def fill(db: sqlite3.Connection) -> None:
    """The database may not grow by one more page, and the pages it has are full."""
    db.execute("CREATE TABLE IF NOT EXISTS ballast (x BLOB)")
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")
    for size in (4096, 512, 64, 8):
        try:
            while True:
                db.execute("INSERT INTO ballast VALUES (zeroblob(?))", (size,))
        except sqlite3.OperationalError:
            continue  # this size no longer fits: try a smaller one


def free(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA max_page_count = 1073741823")


def event(seq: int) -> dict[str, Any]:
    return {"t": 1.0, "code": "DESAT", "state": "active", "seq": seq, "pad": "x" * 2000}


def test_the_outbox_keeps_refused_events_in_memory_in_order(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "j.sqlite")
    outbox.append(1, event(1))
    fill(outbox._db)
    for seq in (2, 3, 4):
        outbox.append(seq, event(seq))
    assert outbox.health.failed is not None
    assert "full" in outbox.health.failed
    assert [e.seq for e in outbox.peek()] == [1, 2, 3, 4]
    assert len(outbox) == 4
    outbox.remove_many([1, 2])
    assert [e.seq for e in outbox.peek()] == [3, 4]
    assert outbox.last_seq == 4
    free(outbox._db)
    outbox.append(5, event(5))
    assert outbox.health.failed is None
    outbox.close()
    # what was waiting in memory is on disk now, in order, the delivered ones gone
    again = Outbox(tmp_path / "j.sqlite")
    assert [e.seq for e in again.peek()] == [3, 4, 5]
    assert again.last_seq == 5
    again.close()


def test_the_journal_skips_writes_the_disk_refuses_and_says_so(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    first = journal.record("tick", 1.0, 1.0)
    journal.idle(first, 0)
    fill(journal._db)
    ids = [journal.record("samples", 2.0, [["x" * 3000]]) for _ in range(5)]
    assert 0 in ids
    assert journal.health.failed is not None
    journal.idle(0, 7)  # an input that never reached the disk never becomes the mark
    assert journal.idle_mark == first
    free(journal._db)
    assert journal.record("tick", 3.0, 3.0) > 0
    assert journal.health.failed is None
    journal.close()


def settings_for(broker: BrokerProcess, tmp_path: Path, min_free_mb: float = 0) -> Settings:
    return bed_settings(
        broker.url,
        tmp_path,
        journal={"min_free_mb": min_free_mb},
        timeouts={"ward_link_down_s": 2},
    )


async def alarms_until(
    client: aiomqtt.Client, want: tuple[str, str], seen: list[dict[str, Any]]
) -> None:
    async with asyncio.timeout(15):
        async for message in client.messages:
            if str(message.topic) == f"{PREFIX}/alarms":
                e = json.loads(message.payload)
                seen.append(e)
                if (e["code"], e["state"]) == want:
                    return


@pytest.mark.timeout(60)
async def test_a_full_disk_raises_journal_failed_and_alarms_still_reach_the_ward(
    mqtt_broker: BrokerProcess, tmp_path: Path
) -> None:
    settings = settings_for(mqtt_broker, tmp_path)
    seen: list[dict[str, Any]] = []
    async with running_bed(settings, mqtt_broker, "nurse") as (daemon, nurse):
        await nurse.subscribe(f"{PREFIX}/alarms", qos=1)
        fill(daemon.journal._db)
        fill(daemon.outbox._db)
        # SpO2 80 % for 7 s, ten samples a second (more than the pages have room for):
        # DESAT_CRITICAL (< 85 for 5 s, every phase)
        now = time.time()
        for i in range(70):
            sample = {"t": now - 7 + i / 10, "param": "SPO2", "value": 80.0, "valid": True,
                      "device_id": "mon1", "reason": "x" * 200}  # fmt: skip
            await nurse.publish(TOPIC, json.dumps(sample).encode(), qos=1)
        await alarms_until(nurse, ("DESAT_CRITICAL", "active"), seen)
        await alarms_until(nurse, ("JOURNAL_FAILED", "active"), seen)
        failed = next(e for e in seen if e["code"] == "JOURNAL_FAILED")
        assert failed["priority"] == "high"
        assert "full" in failed["message"]
        free(daemon.journal._db)
        free(daemon.outbox._db)
        await alarms_until(nurse, ("JOURNAL_FAILED", "cleared"), seen)
        seqs = [e["seq"] for e in seen]
        assert seqs == sorted(seqs)
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        # nothing waits: everything raised while the disk was full went out and left
        async with asyncio.timeout(10):
            while len(daemon.outbox):  # noqa: ASYNC110 - the outbox has no event to wait on
                await asyncio.sleep(0.1)
    # what was raised while the disk was full is in the journal's events now
    journal = Journal(tmp_path / "journal.sqlite", readonly=True)
    codes = [(e["code"], e["state"]) for e in journal.events()]
    journal.close()
    assert ("DESAT_CRITICAL", "active") in codes
    assert ("JOURNAL_FAILED", "active") in codes


async def test_the_bed_warns_before_its_disk_is_full(
    mqtt_broker: BrokerProcess, tmp_path: Path
) -> None:
    # more free space wanted than any disk has: the warning is due now
    settings = settings_for(mqtt_broker, tmp_path, min_free_mb=1e12)
    seen: list[dict[str, Any]] = []
    async with running_bed(settings, mqtt_broker, "nurse") as (_daemon, nurse):
        await nurse.subscribe(f"{PREFIX}/alarms", qos=1)
        await alarms_until(nurse, ("JOURNAL_SPACE_LOW", "active"), seen)
    low = next(e for e in seen if e["code"] == "JOURNAL_SPACE_LOW")
    assert (low["priority"], low["kind"]) == ("low", "technical")
    assert "MB free on the journal's disk" in low["message"]
