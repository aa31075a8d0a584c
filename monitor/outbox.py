"""The durable alarm outbox: on disk before it is published, gone only after the PUBACK.

An alarm event is written before it is published and leaves only once the broker has
acknowledged it (PUBACK). A crash, a restart or a dead link loses none.

SQLite in WAL mode with `synchronous=FULL`: `append` returns only after the event is durable.
Each bed's events carry a monotonic `seq` that survives restarts (the table's own rowid order
plus a kept high-water mark), so a receiver can spot gaps and drop duplicates (delivery is at
least once).

The writes are synchronous on the event loop on purpose: alarm events are rare (a few an hour),
a commit takes about a millisecond, and an alarm must not be announced before it is durable.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    @property
    def last_seq(self) -> int:
        """The highest `seq` ever appended (0 for a new outbox)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
        return int(row[0]) if row else 0

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def append(self, seq: int, payload: dict[str, Any]) -> None:
        """Store one event durably (outbox and journal); `seq` must be above every earlier one.

        Raises:
            ValueError: `seq` does not increase.
        """
        if seq <= self.last_seq:
            raise ValueError(f"seq {seq} does not follow {self.last_seq}")
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            text = json.dumps(payload)
            self._db.execute("INSERT INTO outbox (seq, payload) VALUES (?, ?)", (seq, text))
            # the journal's permanent copy, in the same transaction: never one without the other
            self._db.execute(
                "INSERT INTO events (seq, t, session_id, code, state, payload) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (seq, payload.get("t", 0.0), payload.get("session_id"), payload.get("code", ""),
                 payload.get("state", ""), text),
            )  # fmt: skip
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES ('last_seq', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (seq,),
            )

    def peek(self, limit: int = 100) -> list[OutboxEntry]:
        """The oldest waiting events, in `seq` order."""
        rows = self._db.execute(
            "SELECT seq, payload FROM outbox ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        return [OutboxEntry(int(seq), json.loads(payload)) for seq, payload in rows]

    def remove(self, seq: int) -> None:
        """Forget an event the broker has acknowledged."""
        self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))

    def remove_many(self, seqs: list[int]) -> None:
        """Forget events the broker has acknowledged, in one transaction."""
        if seqs:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])
