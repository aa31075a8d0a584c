"""The bed's journal: every input the alarm core processed, in order, so a restart can resume.

The alarm core is deterministic: the same inputs in the same order give the same state and the
same events (docs/ARCHITECTURE.md "Data flow"). So the journal keeps the inputs, not snapshots of
state: each batch of samples, each tick, each command (with the time it was judged at) and
each system condition, in the order the bed loop applied them. After a crash (`kill -9`, power
loss) the daemon replays them into a fresh core (`resume`), which then has the phase, baseline,
timers, active, latched and acknowledged alarms it had, and the events it makes on the way are
dropped, since they were journaled (and, for alarm events, made durable in the outbox) the first
time. Alarm events themselves are kept for ever in the `events` table, written in the outbox's
transaction (`monitor.outbox`), so no event the bed announced is lost or written twice.

Replay starts after the last *idle mark*: the last tick at which the bed had no session and no
active alarm, when nothing the core remembers can matter to what comes next (docs/ALARMS.md windows
are at most the 300 s baseline window, which only looks at the session's own `pre` phase).

Same SQLite file as the outbox, its own connection, WAL with `synchronous=NORMAL`: a commit is
in the operating system's hands at once, so a killed process loses nothing; power loss may
lose the last few hundred milliseconds of samples, never an alarm event (those are FULL).
Inputs older than `keep_days` and before the idle mark are pruned.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, TypeVar, cast, get_args

from monitor.storage import StorageHealth, is_storage_error

_T = TypeVar("_T")

__all__ = ["Input", "Journal", "SessionRecord"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS inputs (
    id INTEGER PRIMARY KEY,
    t REAL NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL,
    opened_t REAL NOT NULL,
    closed_t REAL,
    first_input INTEGER NOT NULL,
    last_input INTEGER,
    info TEXT NOT NULL
);
-- the answer given to each accepted command, by request_id: the same command delivered again
-- (QoS 1 after a restart, a console retrying) is answered again from here, never applied twice
CREATE TABLE IF NOT EXISTS answers (
    request_id TEXT PRIMARY KEY,
    command TEXT NOT NULL,
    t REAL NOT NULL,
    result TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS journal_meta (
    key TEXT PRIMARY KEY,
    value REAL NOT NULL
);
"""

InputKind = Literal["samples", "tick", "command", "condition"]
_INPUT_KINDS: Final[tuple[str, ...]] = get_args(InputKind)
_DAY_S: Final = 86400.0


@dataclass(frozen=True)
class Input:
    """One journaled input: `kind`, the bed-clock time it was applied at, its data."""

    id: int
    t: float
    kind: InputKind
    data: Any


@dataclass(frozen=True)
class SessionRecord:
    """A session as the journal knows it (for export, report and the course)."""

    session_id: str
    patient_id: str
    opened_t: float
    closed_t: float | None
    first_input: int
    last_input: int | None
    info: dict[str, Any]


class Journal:
    """Append-only record of the bed's inputs and sessions (see the module docstring)."""

    def __init__(self, path: Path, *, keep_days: float = 30.0, readonly: bool = False) -> None:
        """Open (and create) the journal at `path`; `readonly` for tools that only read it.

        A read-only journal is opened with SQLite's ``mode=ro``: the reader needs no write
        access to it and cannot change what the bed wrote.
        """
        if readonly:
            self._db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, isolation_level=None)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        self._keep_s = keep_days * _DAY_S
        # a full or failing disk: writes are skipped (and retried at the next one) rather
        # than stopping the bed; the daemon raises JOURNAL_FAILED while this says so
        self.health = StorageHealth("journal")
        self._idle = self._meta("idle_mark")
        self._idle_seq = self._meta("idle_seq")

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def _write(self, what: str, write: Callable[[], _T], failed: _T) -> _T:
        """Run one write; on a full or failing disk return `failed` instead (module docstring)."""
        try:
            result = write()
        except sqlite3.OperationalError as exc:
            if not is_storage_error(exc):
                raise
            self.health.failing(exc, what)
            return failed
        self.health.succeeded()
        return result

    # ------------------------------------------------------------------ writing

    def record(self, kind: InputKind, t: float, data: Any) -> int:
        """Append one input; return its id (0 when the disk refused it)."""
        text = json.dumps(data)

        def write() -> int:
            cur = self._db.execute(
                "INSERT INTO inputs (t, kind, data) VALUES (?, ?, ?)", (t, kind, text)
            )
            return int(cur.lastrowid or 0)

        return self._write("input", write, 0)

    def idle(self, input_id: int, seq: int) -> None:
        """The bed was idle after input `input_id`, its events numbered up to `seq`.

        A later restart replays from after it, numbering the events it regenerates from `seq`.
        """
        if input_id < 1 or input_id == self._idle:
            return  # 0: that input never reached the disk; the mark stays where it was

        def write() -> None:
            with self._db:
                self._set_meta("idle_mark", input_id)
                self._set_meta("idle_seq", seq)
            self._idle, self._idle_seq = input_id, seq

        self._write("idle mark", write, None)

    def session_opened(self, info: dict[str, Any], first_input: int) -> None:
        """Record a new session, which began with input `first_input`."""
        self._write("session", lambda: self._db.execute(
            "INSERT OR REPLACE INTO sessions "
            "(session_id, patient_id, opened_t, first_input, info) VALUES (?, ?, ?, ?, ?)",
            (info["session_id"], info["patient_id"], info["opened_t"], first_input,
             json.dumps(info)),
        ), None)  # fmt: skip

    def session_updated(self, info: dict[str, Any]) -> None:
        """Store the session's current information (steps, overrides, scores)."""
        self._write("session", lambda: self._db.execute(
            "UPDATE sessions SET info = ? WHERE session_id = ?",
            (json.dumps(info), info["session_id"]),
        ), None)  # fmt: skip

    def session_closed(self, session_id: str, t: float, last_input: int) -> None:
        """The session ended (discharge) at `t` with input `last_input`."""
        self._write("session", lambda: self._db.execute(
            "UPDATE sessions SET closed_t = ?, last_input = ? WHERE session_id = ?",
            (t, last_input, session_id),
        ), None)  # fmt: skip

    def answered(self, request_id: str, command: str, t: float, result: dict[str, Any]) -> None:
        """Keep the answer to the accepted `command` (canonical JSON) sent as `request_id`."""
        self._write("answer", lambda: self._db.execute(
            "INSERT OR REPLACE INTO answers (request_id, command, t, result) VALUES (?, ?, ?, ?)",
            (request_id, command, t, json.dumps(result)),
        ), None)  # fmt: skip

    def answer(self, request_id: str, command: str) -> dict[str, Any] | None:
        """The answer already given to this very `command` sent as `request_id`, if any."""
        row = self._db.execute(
            "SELECT result FROM answers WHERE request_id = ? AND command = ?",
            (request_id, command),
        ).fetchone()
        if row is None:
            return None
        result: dict[str, Any] = json.loads(row[0])
        return result

    def prune(self, now: float) -> int:
        """Forget inputs older than `keep_days` that no replay or open session needs."""
        keep_from = self._db.execute(
            "SELECT min(first_input) FROM sessions WHERE closed_t IS NULL"
        ).fetchone()[0]
        limit = self._idle if keep_from is None else min(self._idle, keep_from)

        def write() -> int:
            cur = self._db.execute(
                "DELETE FROM inputs WHERE id <= ? AND t < ?", (limit, now - self._keep_s)
            )
            self._db.execute("DELETE FROM answers WHERE t < ?", (now - self._keep_s,))
            return int(cur.rowcount)

        return self._write("prune", write, 0)

    # ------------------------------------------------------------------ reading

    @property
    def idle_mark(self) -> int:
        """The input after which a restart replays (0: from the first)."""
        return int(self._idle)

    @property
    def idle_seq(self) -> int:
        """The last event `seq` the bed had made at the idle mark."""
        return int(self._idle_seq)

    @property
    def last_input(self) -> Input | None:
        """The newest input, if any."""
        row = self._db.execute(
            "SELECT id, t, kind, data FROM inputs ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return None if row is None else _input(row)

    def inputs(self, after: int = 0, until: int | None = None) -> Iterator[Input]:
        """Inputs with `after` < id (<= `until`), in order."""
        stop = until if until is not None else 2**62
        cur = self._db.execute(
            "SELECT id, t, kind, data FROM inputs WHERE id > ? AND id <= ? ORDER BY id",
            (after, stop),
        )
        for row in cur:
            yield _input(row)

    def sessions(self, patient_id: str | None = None) -> list[SessionRecord]:
        """Every journaled session (of `patient_id`), oldest first."""
        sql = "SELECT session_id, patient_id, opened_t, closed_t, first_input, last_input, info "
        sql += "FROM sessions"
        args: tuple[Any, ...] = ()
        if patient_id is not None:
            sql += " WHERE patient_id = ?"
            args = (patient_id,)
        rows = self._db.execute(sql + " ORDER BY opened_t", args).fetchall()
        return [
            SessionRecord(sid, pid, opened, closed, first, last, json.loads(info))
            for sid, pid, opened, closed, first, last, info in rows
        ]

    def session(self, session_id: str) -> SessionRecord | None:
        """One session by id (or by a unique prefix of it)."""
        matches = [s for s in self.sessions() if s.session_id.startswith(session_id)]
        return matches[0] if len(matches) == 1 else None

    def open_alarms(self) -> list[dict[str, Any]]:
        """The last event of every alarm the journal never saw cleared, oldest first."""
        try:
            rows = self._db.execute(
                "SELECT payload FROM events WHERE state != 'cleared' AND seq IN "
                "(SELECT max(seq) FROM events GROUP BY code) ORDER BY seq"
            ).fetchall()
        except sqlite3.OperationalError:
            return []
        return [json.loads(p) for (p,) in rows]

    def events(self, session_id: str | None = None) -> list[dict[str, Any]]:
        """Alarm events in `seq` order (of one session)."""
        sql = "SELECT payload FROM events"
        args: tuple[Any, ...] = ()
        if session_id is not None:
            sql += " WHERE session_id = ?"
            args = (session_id,)
        try:
            rows = self._db.execute(sql + " ORDER BY seq", args).fetchall()
        except sqlite3.OperationalError:
            return []  # no outbox has written yet
        return [json.loads(p) for (p,) in rows]

    # ------------------------------------------------------------------ internals

    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM journal_meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _set_meta(self, key: str, value: float) -> None:
        self._db.execute(
            "INSERT INTO journal_meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


def _input(row: tuple[int, float, str, str]) -> Input:
    """One journal row as an `Input`.

    Raises:
        ValueError: the row's kind is not an input kind (a journal written by something else,
            or damaged); `resume` then starts afresh and says so (MONITORING_GAP).
    """
    id_, t, kind, data = row
    if kind not in _INPUT_KINDS:
        raise ValueError(f"journal input {id_}: kind {kind!r} is not one of {_INPUT_KINDS}")
    return Input(id_, t, cast("InputKind", kind), json.loads(data))
