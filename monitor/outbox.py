"""The durable alarm outbox: on disk before it is published, gone only after the PUBACK.

An alarm event is written before it is published and leaves only once the broker has
acknowledged it (PUBACK). A crash, a restart or a dead link loses none.

SQLite in WAL mode with `synchronous=FULL`: `append` returns only after the event is durable.
Each bed's events carry a monotonic `seq` that survives restarts (the table's own rowid order
plus a kept high-water mark), so a receiver can spot gaps and drop duplicates (delivery is at
least once).

The writes are synchronous on the event loop on purpose: alarm events are rare (a few an hour),
a commit takes about a millisecond, and an alarm must not be announced before it is durable.

A full or failing disk (`monitor.storage`) must not keep an alarm from the ward: an event the
disk refuses waits in memory, in `seq` order behind those on disk, and goes out like them; each
later write tries to store the waiting ones first. Only a restart before the disk recovers loses
them, which is what `JOURNAL_FAILED` tells the ward (issue 17, item 4).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitor.storage import StorageHealth, is_storage_error

__all__ = ["Outbox", "OutboxEntry"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    t REAL NOT NULL,
    session_id TEXT,
    code TEXT NOT NULL,
    state TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_session ON events (session_id);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class OutboxEntry:
    """One event waiting for the broker."""

    seq: int
    payload: dict[str, Any]


class Outbox:
    """A durable FIFO of alarm event payloads, keyed by their `seq`."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self.health = StorageHealth("outbox")
        # events the disk refused, in seq order, all after those on disk
        self._memory: list[OutboxEntry] = []
        # delivered events whose deletion the disk refused: not to be sent again
        self._delivered: set[int] = set()
        self._last_seq = self._stored_last_seq()

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def _stored_last_seq(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
        return int(row[0]) if row else 0

    @property
    def last_seq(self) -> int:
        """The highest `seq` ever appended (0 for a new outbox)."""
        return self._last_seq

    def __len__(self) -> int:
        stored = int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])
        return stored - len(self._delivered) + len(self._memory)

    def _store(self, entry: OutboxEntry) -> None:
        payload = entry.payload
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            text = json.dumps(payload)
            self._db.execute("INSERT INTO outbox (seq, payload) VALUES (?, ?)", (entry.seq, text))
            # the journal's permanent copy, in the same transaction: never one without the other
            self._db.execute(
                "INSERT INTO events (seq, t, session_id, code, state, payload) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (entry.seq, payload.get("t", 0.0), payload.get("session_id"),
                 payload.get("code", ""), payload.get("state", ""), text),
            )  # fmt: skip
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES ('last_seq', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (entry.seq,),
            )

    def _retry(self) -> bool:
        """Store the events waiting in memory and forget delivered ones; True if all went."""
        try:
            while self._memory:
                self._store(self._memory[0])
                self._memory.pop(0)
            if self._delivered:
                with self._db:
                    self._db.execute("BEGIN IMMEDIATE")
                    self._db.executemany(
                        "DELETE FROM outbox WHERE seq = ?", [(s,) for s in self._delivered]
                    )
                self._delivered.clear()
        except sqlite3.OperationalError as exc:
            if not is_storage_error(exc):
                raise
            self.health.failing(exc, "retry")
            return False
        return True

    def append(self, seq: int, payload: dict[str, Any]) -> None:
        """Store one event durably (outbox and journal); `seq` must be above every earlier one.

        Raises:
            ValueError: `seq` does not increase.
        """
        if seq <= self.last_seq:
            raise ValueError(f"seq {seq} does not follow {self.last_seq}")
        self._last_seq = seq
        entry = OutboxEntry(seq, payload)
        self._memory.append(entry)
        if self._retry():
            self.health.succeeded()

    def peek(self, limit: int = 100) -> list[OutboxEntry]:
        """The oldest waiting events, in `seq` order."""
        if (self._memory or self._delivered) and self._retry():
            self.health.succeeded()
        rows = self._db.execute(
            "SELECT seq, payload FROM outbox ORDER BY seq LIMIT ?", (limit + len(self._delivered),)
        ).fetchall()
        stored = [
            OutboxEntry(int(seq), json.loads(payload))
            for seq, payload in rows
            if int(seq) not in self._delivered
        ]
        return (stored + self._memory)[:limit]

    def remove(self, seq: int) -> None:
        """Forget an event the broker has acknowledged."""
        self.remove_many([seq])

    def remove_many(self, seqs: list[int]) -> None:
        """Forget events the broker has acknowledged, in one transaction."""
        if not seqs:
            return
        gone = set(seqs)
        in_memory = {e.seq for e in self._memory}
        self._memory = [e for e in self._memory if e.seq not in gone]
        self._delivered |= gone - in_memory
        if self._retry():
            self.health.succeeded()
