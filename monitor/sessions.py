"""The sessions a bed's journal holds, as `vigil sessions` lists them, and finding one by id.

One line a session, oldest first: its id, the patient, when it opened (ISO 8601 with the
offset, to the second, in the machine's time zone), its phase as the journal last recorded it
(`pre`, `infusion`, `post`, or `discharged`) and which infusion of the patient's course it was
(`monitor.course`; `-` while the infusion has not started). `vigil export` and `vigil report`
name the known sessions in this form when they are given an id the journal does not hold.

`vigil sessions` itself is `monitor.export.sessions_main`, next to the journal lookup it shares
with `vigil export`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from monitor.course import COURSE_INFUSIONS, course_summary

if TYPE_CHECKING:
    from monitor.journal import Journal, SessionRecord

__all__ = ["UnknownSessionError", "find_session", "session_table"]

KNOWN_LISTED: Final = 20  # how many sessions an "unknown session" message lists
_HEADER: Final = ("SESSION", "PATIENT", "OPENED", "PHASE", "INFUSION")


class UnknownSessionError(Exception):
    """No session, or more than one, matches; the message lists the known or matching ones."""


def find_session(journal: Journal, session: str) -> SessionRecord:
    """The session whose id is `session` or starts with it.

    Raises:
        UnknownSessionError: none matches, or the prefix matches more than one.
    """
    records = journal.sessions()
    exact = [r for r in records if r.session_id == session]
    matches = exact or [r for r in records if r.session_id.startswith(session)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        table = session_table(matches, among=records)
        raise UnknownSessionError(f"session {session!r} is ambiguous; it matches:\n{table}")
    if not records:
        raise UnknownSessionError(f"no session {session!r}: the journal holds no sessions")
    shown = records[-KNOWN_LISTED:]
    more = f" (the latest {len(shown)} of {len(records)})" if len(shown) < len(records) else ""
    table = session_table(shown, among=records)
    raise UnknownSessionError(f"no session {session!r}; known sessions{more}:\n{table}")


def _opened(t: float, tz: dt.tzinfo | None) -> str:
    # astimezone(None): the machine's local rules in force at `t`
    return dt.datetime.fromtimestamp(t, dt.UTC).astimezone(tz).isoformat(timespec="seconds")


def _phase(record: SessionRecord) -> str:
    info = record.info
    if record.closed_t is not None:
        return "discharged"
    if info.get("infusion_stop_t") is not None:
        return "post"
    if info.get("infusion_start_t") is not None:
        return "infusion"
    return "pre"


def _infusion(record: SessionRecord, among: Sequence[SessionRecord]) -> str:
    start = record.info.get("infusion_start_t")
    if start is None:
        return "-"
    infos = [r.info for r in among if r.patient_id == record.patient_id]
    n = course_summary(infos, at=float(start))["infusion_number"]
    return f"{n} of {COURSE_INFUSIONS}"


def session_table(
    records: Sequence[SessionRecord],
    *,
    among: Sequence[SessionRecord] | None = None,
    tz: dt.tzinfo | None = None,
) -> str:
    """`records` as an indented table with a header line; `among`: every session (the course)."""
    every = records if among is None else among
    rows = [_HEADER] + [
        (r.session_id, r.patient_id, _opened(r.opened_t, tz), _phase(r), _infusion(r, every))
        for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER))]
    return "\n".join(
        "  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
