"""When the bed's disk fails: which SQLite errors mean it, and saying so once.

A full disk or a failing one (SQLite's SQLITE_FULL, SQLITE_IOERR and its extended codes) must not
stop monitoring (issue 17, item 4): the journal and the outbox catch exactly these, keep going in
memory, retry at their next write, and the daemon raises `JOURNAL_FAILED` while either is
failing. Any other SQLite error is a bug and is raised.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Final

__all__ = ["StorageHealth", "is_storage_error"]

log = logging.getLogger("vigil.storage")

# https://www.sqlite.org/rescode.html: primary result codes (the low byte of extended ones)
_SQLITE_IOERR: Final = 10
_SQLITE_FULL: Final = 13


def is_storage_error(exc: sqlite3.Error) -> bool:
    """Whether `exc` says the disk is full or failing (not a bug in what was written)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in {_SQLITE_IOERR, _SQLITE_FULL}
    text = str(exc)
    return "disk is full" in text or "disk I/O error" in text


class StorageHealth:
    """Whether one store's writes fail now; logs the first failure and the recovery once."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.failed: str | None = None

    def failing(self, exc: sqlite3.Error, what: str) -> None:
        """A write failed with a storage error."""
        if self.failed is None:
            log.error("event=storage_failed store=%s write=%s error=%r", self.name, what, str(exc))
        self.failed = str(exc)

    def succeeded(self) -> None:
        """A write went through."""
        if self.failed is not None:
            log.warning("event=storage_recovered store=%s", self.name)
            self.failed = None
