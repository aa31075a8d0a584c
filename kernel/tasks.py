"""Task helpers for Python 3.11's cancellation corner cases (docs/DESIGN.md P8).

Drivers, simulators, the ward link and the daemon all await aiomqtt or serial I/O through
`asyncio.wait_for`, so they share these two helpers rather than each its own copy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

__all__ = ["cancel_until_done", "raise_if_cancelled"]


async def cancel_until_done(tasks: Iterable[asyncio.Task[None]], retry_s: float) -> None:
    """Wait for cancelled `tasks` to end, cancelling again those still running every `retry_s`.

    Python 3.11's `asyncio.wait_for` can lose a cancellation that lands as its inner future
    completes (CPython gh-86296), and aiomqtt 2.x publishes through it; a task cancelled once
    may therefore go on. The first `retry_s` is left to clean-up (a goodbye message).
    """
    pending = {t for t in tasks if not t.done()}
    while pending:
        _, pending = await asyncio.wait(pending, timeout=retry_s)
        for task in pending:
            task.cancel()


def raise_if_cancelled() -> None:
    """Re-raise a cancellation that an awaited call swallowed.

    On Python 3.11, `asyncio.wait_for` returns normally when the cancellation of its task lands
    just as the inner future completes (CPython gh-86296, fixed in 3.12); aiomqtt 2.x awaits
    every publish through it. The task's cancel request is still counted, so call this after
    such an await on a normal path (never inside cleanup that runs after a cancellation).
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
