"""monitor.supervisor: reconnection with backoff, and a task that stays usable between attempts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from monitor.supervisor import Backoff, LinkState, LinkStatus, raise_if_cancelled, supervise


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
