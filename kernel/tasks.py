"""Task helpers for Python 3.11's cancellation corner cases (docs/DESIGN.md P8).

Drivers, simulators, the ward link and the daemon all await aiomqtt or serial I/O through
`asyncio.wait_for`, so they share these two helpers rather than each its own copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Coroutine, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import logging
    from types import TracebackType

__all__ = [
    "EXIT_ON_SIGNAL",
    "TaskGroupService",
    "cancel_until_done",
    "raise_if_cancelled",
    "stop_on_signals",
    "until_signal",
]

# The signals that stop a command-line run and its exit status after each: 0 for SIGTERM (a
# stop asked for, as systemd does), 130 for SIGINT (Ctrl-C; 128 + 2, as shells report it).
EXIT_ON_SIGNAL: Final = {signal.SIGTERM: 0, signal.SIGINT: 130}


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


@contextlib.contextmanager
def stop_on_signals(log: logging.Logger) -> Iterator[asyncio.Event]:
    """An event that SIGTERM or SIGINT sets while the block runs (each logged `event=signal`).

    For a service's main coroutine: systemd stops it with SIGTERM, a person with Ctrl-C; the
    service ends its work in order when the event is set. The handlers are removed on the way
    out, so a signal after it is the default again.
    """
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def on_signal(signum: int) -> None:
        log.info("event=signal signal=%s", signal.Signals(signum).name)
        stopping.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        yield stopping
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def until_signal(
    work: Coroutine[Any, Any, object], *, name: str | None = None
) -> signal.Signals | None:
    """Run `work` until it ends or SIGTERM/SIGINT arrives (then cancel it); which signal, if any.

    For `vigil demo` and `vigil simulate`, whose work is cancelled rather than ended in order.
    The cancellation runs `work`'s clean-up (child processes stopped and reaped) before this
    returns; a second signal meanwhile changes nothing. A cancellation of the caller is not
    swallowed.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(work, name=name)
    got: list[signal.Signals] = []

    def stop(signum: signal.Signals) -> None:
        if not got:
            got.append(signum)
            task.cancel()

    for signum in EXIT_ON_SIGNAL:
        loop.add_signal_handler(signum, stop, signum)
    try:
        await task
    except asyncio.CancelledError:
        # ours to swallow only if a signal cancelled the work; a cancel of the caller is not
        if not (got and task.cancelled()):
            raise
    finally:
        for signum in EXIT_ON_SIGNAL:
            loop.remove_signal_handler(signum)
    return got[0] if got else None


class TaskGroupService:
    """A service whose tasks run in a TaskGroup of its own while its `async with` block runs.

    Its `__aenter__` opens the group (`_open_group`) and starts `_tasks` in it. Leaving the
    block stops them (`_stop`: cancel each), waits for them, cancelling again every
    `cancel_retry_s` (`cancel_until_done`), leaves the group, and then, whatever happened,
    `_release`s what the service holds beyond its tasks (docs/DESIGN.md P8).
    """

    cancel_retry_s: float = 0.5
    _group: asyncio.TaskGroup | None
    _tasks: list[asyncio.Task[None]]

    async def _open_group(self) -> asyncio.TaskGroup:
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        return self._group

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._group is not None
        await self._stop()
        await cancel_until_done(self._tasks, self.cancel_retry_s)
        try:
            await self._group.__aexit__(exc_type, exc, tb)
        finally:
            await self._release()

    async def _stop(self) -> None:
        for task in self._tasks:
            task.cancel()

    async def _release(self) -> None:
        """Close what the service holds beyond its tasks (nothing by default)."""
