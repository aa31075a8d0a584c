"""monitor.supervisor: reconnection with backoff, and a task that stays usable between attempts."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import pytest

from kernel.tasks import raise_if_cancelled
from monitor.supervisor import Backoff, LinkState, LinkStatus, supervise


class LostError(Exception):
    pass


async def test_a_failed_task_group_does_not_leave_the_supervised_task_cancelled() -> None:
    # A connection serving in a TaskGroup (the ward link's receive and send tasks) whose child
    # fails: on Python 3.11 the group leaves a cancel request on the parent. The next attempt
    # must not see it, or it would end at its first `raise_if_cancelled`.
    attempts: list[int] = []
    states: list[LinkState] = []

    async def serve(connected: Callable[[], None]) -> None:
        attempts.append(asyncio.current_task().cancelling())  # type: ignore[union-attr]
        if len(attempts) == 3:
            connected()
            raise_if_cancelled()
            raise asyncio.CancelledError  # done: stop the loop as a cancel would

        async def lose() -> None:
            await asyncio.sleep(0.01)
            raise LostError

        async with asyncio.TaskGroup() as tg:
            tg.create_task(lose())
            tg.create_task(asyncio.sleep(60))

    status = LinkStatus("link")
    status.listeners.append(lambda s: states.append(s.state))
    with pytest.raises(asyncio.CancelledError):
        await supervise(
            status, serve, errors=(LostError,), backoff=Backoff(base=0.001, cap=0.001), now=float
        )
    assert attempts == [0, 0, 0]
    assert status.reconnects == 2
    assert states[-2:] == [LinkState.CONNECTED, LinkState.STOPPED]
    assert LinkState.BACKING_OFF in states


async def test_backoff_is_capped_and_reset() -> None:
    backoff = Backoff(base=1.0, cap=4.0)
    delays = [backoff.next() for _ in range(10)]
    assert all(0.0 <= d <= 4.0 for d in delays)
    backoff.reset()
    assert backoff.next() <= 1.0


def test_backoff_stays_short_while_something_urgent_waits() -> None:
    waiting = [True]
    backoff = Backoff(base=0.5, cap=30.0, urgent_cap=1.0, urgent=lambda: waiting[0])
    delays = [backoff.next() for _ in range(20)]  # an outage long enough to reach the cap
    assert all(0.0 <= d <= 1.0 for d in delays)
    waiting[0] = False
    later = [backoff.next() for _ in range(50)]
    assert max(later) > 1.0  # back to the full cap once nothing waits (50 draws up to 30 s)
    assert all(d <= 30.0 for d in later)


async def test_a_connection_dropped_at_once_does_not_reset_the_backoff() -> None:
    """A peer that accepts and drops every connection is retried ever more slowly."""
    seen: list[float] = []

    class Recording(Backoff):
        def next(self) -> float:
            super().next()
            seen.append(self._attempt)
            return 0.0  # do not really wait

    backoff = Recording(base=0.5, cap=30.0)
    status = LinkStatus(name="t")
    calls = 0

    async def serve(connected: Callable[[], None]) -> None:
        nonlocal calls
        calls += 1
        connected()
        if calls == 6:
            await asyncio.sleep(3600)  # stays up: the test stops here
        raise OSError("dropped")

    task = asyncio.create_task(
        supervise(status, serve, errors=(OSError,), backoff=backoff, now=time.monotonic)
    )
    async with asyncio.timeout(5):
        while calls < 6:  # noqa: ASYNC110 - the supervisor signals nothing to wait on
            await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    # each quick drop counted as one more attempt: 1, 2, 3, 4, 5 (no reset at connect)
    assert seen == [1, 2, 3, 4, 5]
