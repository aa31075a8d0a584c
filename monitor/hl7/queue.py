"""The gateway's durable queue of HL7 messages, one SQLite file per destination.

A message is written (committed, `synchronous=FULL`) before anything is sent, and leaves only
when the receiver has accepted it (`delivered`). Its control id (MSH-10) is fixed when it is
queued and never reused: the row id of an AUTOINCREMENT table, which SQLite never hands out
twice even after deletes, behind a tag drawn once when the file is created. A message sent
again after a lost ACK keeps its control id, so a receiver can drop the duplicate.

Order: alarms before vitals; within a kind, in the order queued, which keeps each bed's
messages in order. A bed whose message is refused can be passed over (`head(skip=…)`) so the
other beds' messages go on.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

__all__ = ["Hl7Queue", "Kind", "QueuedMessage"]

# a duplicate alarm event (an MQTT redelivery) is recognised for this long
_KEYS_KEPT_S = 7 * 86400.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    bed TEXT NOT NULL,
    queued_t REAL NOT NULL,
    control_id TEXT NOT NULL DEFAULT '',
    payload TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS messages_kind ON messages (kind, id);
CREATE TABLE IF NOT EXISTS event_keys (key TEXT PRIMARY KEY, t REAL NOT NULL);
"""
_HEAD = (
    "SELECT id, kind, bed, queued_t, control_id, payload, attempts FROM messages "
    "WHERE kind = ? AND bed NOT IN"
)


class Kind(StrEnum):
    """What a queued message carries; alarms go first."""

    ALARM = "alarm"
    VITALS = "vitals"


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """One message waiting for its ACK."""

    id: int
    kind: Kind
    bed: str
    queued_t: float
    control_id: str
    payload: str
    attempts: int


class Hl7Queue:
    """Messages waiting for the receiver, on disk; see the module docstring."""

    def __init__(self, path: Path, *, now: Callable[[], float] = time.time) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._now = now
        row = self._db.execute("SELECT value FROM meta WHERE key = 'tag'").fetchone()
        if row is None:
            # a new file (a replaced disk, a fresh install) must not restart the ids a receiver
            # has already seen: a tag of its own sets its ids apart
            tag = uuid.uuid4().hex[:8].upper()
            self._db.execute("INSERT INTO meta VALUES ('tag', ?)", (tag,))
        else:
            tag = str(row[0])
        self.tag = tag
        self._db.execute("DELETE FROM event_keys WHERE t < ?", (now() - _KEYS_KEPT_S,))

    def close(self) -> None:
        """Close the file; idempotent."""
        self._db.close()

    def control_id(self, row_id: int) -> str:
        """MSH-10 of the message with row id `row_id` (at most 20 characters, as v2.3 allows)."""
        return f"V{self.tag}{row_id:011d}"

    def enqueue(
        self,
        kind: Kind,
        bed: str,
        build: Callable[[str], str],
        *,
        key: str | None = None,
    ) -> str | None:
        """Queue the message `build(control_id)`; its control id, or None for a duplicate.

        `key` names the event the message carries (an alarm event's bed, id and seq): a second
        message with a key already queued or sent is not queued.
        """
        now = self._now()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if key is not None:
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO event_keys VALUES (?, ?)", (key, now)
                )
                if cursor.rowcount == 0:
                    self._db.execute("ROLLBACK")
                    return None
            cursor = self._db.execute(
                "INSERT INTO messages (kind, bed, queued_t) VALUES (?, ?, ?)",
                (kind.value, bed, now),
            )
            row_id = cursor.lastrowid
            assert row_id is not None
            control_id = self.control_id(row_id)
            self._db.execute(
                "UPDATE messages SET control_id = ?, payload = ? WHERE id = ?",
                (control_id, build(control_id), row_id),
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return control_id

    def head(self, *, skip: Collection[str] = ()) -> QueuedMessage | None:
        """The next message to send: the oldest alarm, else the oldest vitals.

        Beds in `skip` (waiting after a refusal) are passed over, all their messages.
        """
        beds = sorted(skip)
        # placeholders only: no text of ours reaches the SQL
        query = f"{_HEAD} ({','.join('?' * len(beds))}) ORDER BY id LIMIT 1"
        for kind in (Kind.ALARM, Kind.VITALS):
            row = self._db.execute(query, (kind.value, *beds)).fetchone()
            if row is not None:
                return QueuedMessage(
                    id=row[0],
                    kind=Kind(row[1]),
                    bed=row[2],
                    queued_t=row[3],
                    control_id=row[4],
                    payload=row[5],
                    attempts=row[6],
                )
        return None

    def delivered(self, row_id: int) -> None:
        """The receiver accepted the message: it leaves the queue.

        Not synced to disk on its own: a power cut that loses the delete sends the message again
        with its control id, a duplicate the receiver can drop, never a loss. The next queued
        message's commit (synced) makes it durable anyway.
        """
        self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            self._db.execute("DELETE FROM messages WHERE id = ?", (row_id,))
        finally:
            self._db.execute("PRAGMA synchronous=FULL")

    def failed(self, row_id: int, error: str) -> None:
        """One more failed attempt, and why; the message stays."""
        self._db.execute(
            "UPDATE messages SET attempts = attempts + 1, last_error = ? WHERE id = ?",
            (error, row_id),
        )

    def count(self, kind: Kind | None = None) -> int:
        """Messages waiting (of one kind, or all)."""
        if kind is None:
            row = self._db.execute("SELECT COUNT(*) FROM messages").fetchone()
        else:
            row = self._db.execute(
                "SELECT COUNT(*) FROM messages WHERE kind = ?", (kind.value,)
            ).fetchone()
        return int(row[0])

    def __len__(self) -> int:
        return self.count()

    def oldest_t(self, kind: Kind | None = None) -> float | None:
        """When the oldest waiting message (of one kind, or any) was queued; None if none."""
        if kind is None:
            row = self._db.execute("SELECT MIN(queued_t) FROM messages").fetchone()
        else:
            row = self._db.execute(
                "SELECT MIN(queued_t) FROM messages WHERE kind = ?", (kind.value,)
            ).fetchone()
        return None if row[0] is None else float(row[0])

    def note(self, name: str) -> str | None:
        """A value the gateway keeps across restarts (its active HL7_LINK_DOWN), or None."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (f"note:{name}",)).fetchone()
        return None if row is None else str(row[0])

    def set_note(self, name: str, value: str | None) -> None:
        """Keep `value` under `name` (None: forget it)."""
        if value is None:
            self._db.execute("DELETE FROM meta WHERE key = ?", (f"note:{name}",))
        else:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"note:{name}", value))

    def next_number(self, name: str) -> int:
        """A counter kept in the file (the gateway's own alarm `seq`): 1, 2, … across restarts."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (name,)).fetchone()
            value = 1 if row is None else int(row[0]) + 1
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, str(value)))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return value
