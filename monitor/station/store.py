"""The station's own SQLite file: the ward's last known state, its history, and the logins.

The station is not a bed's journal: it keeps what it heard on the ward broker so that a
restarted station shows the same tiles, trends and alarm history (docs/station.md "History").
Samples are written in batches (`flush`, once a second); alarm events, command results and
logins at once, since they are few and must not be lost with a crash.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

__all__ = ["StationStore"]

_SCHEMA = """
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS bed_topic (
    bed TEXT NOT NULL, topic TEXT NOT NULL, rx REAL NOT NULL, payload TEXT NOT NULL,
    PRIMARY KEY (bed, topic));
CREATE TABLE IF NOT EXISTS sample (
    bed TEXT NOT NULL, t REAL NOT NULL, rx REAL NOT NULL, param TEXT NOT NULL, value REAL);
CREATE INDEX IF NOT EXISTS sample_bed_t ON sample (bed, t);
CREATE TABLE IF NOT EXISTS alarm_event (
    id INTEGER PRIMARY KEY, bed TEXT NOT NULL, t REAL NOT NULL, rx REAL NOT NULL,
    session_id TEXT, payload TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS alarm_event_bed_t ON alarm_event (bed, t);
CREATE TABLE IF NOT EXISTS command (
    request_id TEXT PRIMARY KEY, bed TEXT NOT NULL, rx REAL NOT NULL, user TEXT NOT NULL,
    body TEXT NOT NULL, result TEXT);
CREATE TABLE IF NOT EXISTS login (
    token_sha256 TEXT PRIMARY KEY, user TEXT NOT NULL, expires REAL NOT NULL);
"""


def _digest(token: str) -> str:
    # only a digest is kept: a copy of the file does not let anyone in
    return hashlib.sha256(token.encode()).hexdigest()


class StationStore:
    """One SQLite connection, used from the event loop thread only."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.executescript(_SCHEMA)
        self._samples: list[tuple[str, float, float, str, float | None]] = []

    def close(self) -> None:
        """Write what is pending and close the file."""
        self.flush()
        self._db.close()

    # ------------------------------------------------------------------ bed state

    def put_topic(self, bed: str, topic: str, rx: float, payload: str) -> None:
        """The latest retained payload of `topic` (`status`, `session`, `alarms/active`)."""
        self._db.execute(
            "INSERT OR REPLACE INTO bed_topic (bed, topic, rx, payload) VALUES (?, ?, ?, ?)",
            (bed, topic, rx, payload),
        )

    def drop_topic(self, bed: str, topic: str) -> None:
        """Forget a retained topic the bed cleared (a retired bed)."""
        self._db.execute("DELETE FROM bed_topic WHERE bed = ? AND topic = ?", (bed, topic))

    def topics(self) -> list[tuple[str, str, float, str]]:
        """Every kept (bed, topic, rx, payload), for the state at start-up."""
        return list(self._db.execute("SELECT bed, topic, rx, payload FROM bed_topic"))

    # ------------------------------------------------------------------ samples

    def add_sample(self, bed: str, t: float, rx: float, param: str, value: float | None) -> None:
        """Queue one sample for the next `flush`."""
        self._samples.append((bed, t, rx, param, value))

    def flush(self) -> None:
        """Write the queued samples in one transaction."""
        if not self._samples:
            return
        rows, self._samples = self._samples, []
        with self._db:
            self._db.executemany(
                "INSERT INTO sample (bed, t, rx, param, value) VALUES (?, ?, ?, ?, ?)", rows
            )

    def latest_samples(self) -> list[tuple[str, str, float, float, float | None]]:
        """The newest sample of every (bed, param): bed, param, t, rx, value."""
        self.flush()
        return list(
            self._db.execute("SELECT bed, param, MAX(t), rx, value FROM sample GROUP BY bed, param")
        )

    def samples(
        self, bed: str, since: float, until: float, *, points: int = 720
    ) -> dict[str, list[tuple[float, float | None]]]:
        """Samples of `bed` in [since, until], per param, at most about `points` per param.

        Continuous numbers are averaged into buckets; cuff values (NIBP_*) are kept each.
        """
        self.flush()
        bucket = max((until - since) / points, 1.0)
        out: dict[str, list[tuple[float, float | None]]] = {}
        for param, t, value in self._db.execute(
            "SELECT param, MIN(t), AVG(value) FROM sample WHERE bed = ? AND t BETWEEN ? AND ? "
            "AND param NOT LIKE 'NIBP%' GROUP BY param, CAST((t - ?) / ? AS INTEGER) ORDER BY 2",
            (bed, since, until, since, bucket),
        ):
            out.setdefault(param, []).append((t, value))
        for param, t, value in self._db.execute(
            "SELECT param, t, value FROM sample WHERE bed = ? AND t BETWEEN ? AND ? "
            "AND param LIKE 'NIBP%' ORDER BY t",
            (bed, since, until),
        ):
            out.setdefault(param, []).append((t, value))
        return out

    def first_sample(self, bed: str, since: float) -> float | None:
        """The time of the bed's first sample at or after `since`."""
        self.flush()
        row = self._db.execute(
            "SELECT MIN(t) FROM sample WHERE bed = ? AND t >= ?", (bed, since)
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def prune(self, before: float) -> None:
        """Forget samples and alarm events received before `before` (`keep_days`)."""
        with self._db:
            self._db.execute("DELETE FROM sample WHERE rx < ?", (before,))
            self._db.execute("DELETE FROM alarm_event WHERE rx < ?", (before,))
            self._db.execute("DELETE FROM login WHERE expires < ?", (before,))

    # ------------------------------------------------------------------ alarm history

    def add_alarm_event(self, bed: str, rx: float, event: dict[str, Any]) -> None:
        """One alarm event as the bed published it (or the station's own)."""
        self._db.execute(
            "INSERT INTO alarm_event (bed, t, rx, session_id, payload) VALUES (?, ?, ?, ?, ?)",
            (bed, float(event["t"]), rx, event.get("session_id"), json.dumps(event)),
        )

    def alarm_events(
        self, bed: str, *, session_id: str | None = None, limit: int = 500
    ) -> list[dict[str, Any]]:
        """The bed's alarm events, newest first (of one session when `session_id` is given)."""
        if session_id is None:
            rows = self._db.execute(
                "SELECT payload, rx FROM alarm_event WHERE bed = ? ORDER BY t DESC, id DESC "
                "LIMIT ?",
                (bed, limit),
            )
        else:
            rows = self._db.execute(
                "SELECT payload, rx FROM alarm_event WHERE bed = ? AND session_id = ? "
                "ORDER BY t DESC, id DESC LIMIT ?",
                (bed, session_id, limit),
            )
        return [{**json.loads(p), "rx": rx} for p, rx in rows]

    # ------------------------------------------------------------------ commands

    def add_command(self, request_id: str, bed: str, rx: float, user: str, body: str) -> None:
        """A command the station sent, with who sent it."""
        self._db.execute(
            "INSERT OR REPLACE INTO command (request_id, bed, rx, user, body) "
            "VALUES (?, ?, ?, ?, ?)",
            (request_id, bed, rx, user, body),
        )

    def set_result(self, request_id: str, result: str) -> bool:
        """Keep the bed's answer to one of our commands; False if it was not ours."""
        cur = self._db.execute(
            "UPDATE command SET result = ? WHERE request_id = ?", (result, request_id)
        )
        return cur.rowcount > 0

    # ------------------------------------------------------------------ logins

    def add_login(self, token: str, user: str, expires: float) -> None:
        """A session cookie handed out (only its digest is kept)."""
        self._db.execute(
            "INSERT INTO login (token_sha256, user, expires) VALUES (?, ?, ?)",
            (_digest(token), user, expires),
        )

    def login_user(self, token: str, now: float) -> str | None:
        """Who holds `token`, if it is a live session."""
        row = self._db.execute(
            "SELECT user FROM login WHERE token_sha256 = ? AND expires > ?", (_digest(token), now)
        ).fetchone()
        return None if row is None else str(row[0])

    def drop_login(self, token: str) -> None:
        """Log out."""
        self._db.execute("DELETE FROM login WHERE token_sha256 = ?", (_digest(token),))
