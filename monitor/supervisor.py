"""The one owner of reconnection (docs/DESIGN.md P9): explicit states, capped jittered backoff.

Drivers and the ward link raise when their connection is lost; they never loop or sleep to
reconnect. `supervise` runs a connect-and-serve coroutine again and again, backing off between
attempts, and reports each state change.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "Backoff",
    "LinkState",
    "LinkStatus",
    "all_connected",
    "supervise",
]

log = logging.getLogger("vigil.supervisor")


class LinkState(StrEnum):
    """Where one supervised connection is."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKING_OFF = "backing_off"
    STOPPED = "stopped"


@dataclass
class LinkStatus:
    """Observable state of one supervised connection (for metrics and the console)."""

    name: str
    state: LinkState = LinkState.CONNECTING
    reconnects: int = 0
    last_error: str | None = None
    since: float = 0.0
    listeners: list[Callable[[LinkStatus], None]] = field(default_factory=list)

    def set(self, state: LinkState, now: float, error: str | None = None) -> None:
        """Change state and tell the listeners."""
        if state is self.state and error is None:
            return
        self.state = state
        self.since = now
        if error is not None:
            self.last_error = error
        for listener in self.listeners:
            listener(self)


async def all_connected(links: Sequence[LinkStatus], timeout: float) -> None:  # noqa: ASYNC109 - a plain bound
    """Wait until every one of `links` is connected at once.

    Raises:
        TimeoutError: not within `timeout` seconds.
    """
    ready = asyncio.Event()

    def check(_: object = None) -> None:
        if all(s.state is LinkState.CONNECTED for s in links):
            ready.set()

    for link in links:
        link.listeners.append(check)
    try:
        check()
        async with asyncio.timeout(timeout):
            await ready.wait()
    finally:
        for link in links:
            link.listeners.remove(check)


class Backoff:
    """Full-jitter exponential backoff, capped (aiomqtt v3 and aioesphomeapi, docs/DESIGN.md P9).

    The n-th delay is uniform in [0, min(cap, base * 2**n)]; `reset` after a good connection.
    While `urgent()` says something waits that must not (an alarm in the outbox), the cap is
    `urgent_cap`: the link is back within about a second of the broker (issue 17, item 9).
    """

    def __init__(
        self,
        *,
        base: float = 0.5,
        cap: float = 30.0,
        urgent_cap: float = 1.0,
        urgent: Callable[[], bool] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._base = base
        self._cap = cap
        self._urgent_cap = min(urgent_cap, cap)
        self._urgent = urgent
        self._attempt = 0
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography

    def reset(self) -> None:
        """Start again from the smallest delay."""
        self._attempt = 0

    def next(self) -> float:
        """The next delay in seconds."""
        cap = self._urgent_cap if self._urgent is not None and self._urgent() else self._cap
        ceiling = min(cap, self._base * 2 ** min(self._attempt, 30))
        self._attempt += 1
        return self._rng.uniform(0.0, ceiling)


def _undo_stale_cancel(task: asyncio.Task[None], cancelling: int) -> None:
    """Withdraw the cancel request a failed TaskGroup left on its parent task (Python 3.11).

    On 3.11, when a TaskGroup's child fails while the parent already waits in the group's
    `__aexit__`, the group cancels the parent but never uncancels it (3.12 checks the flag
    after the wait). The parent then looks cancelled to `raise_if_cancelled` and ends at its
    next check, silently: a ward link that reconnects after a broker outage would publish its
    birth message and stop. A real cancellation raises `CancelledError` instead of the error
    handled here, so one stale request is all there can be to withdraw.
    """
    if task.cancelling() > cancelling:
        task.uncancel()


async def supervise(
    status: LinkStatus,
    serve: Callable[[Callable[[], None]], Awaitable[None]],
    *,
    errors: tuple[type[BaseException], ...],
    backoff: Backoff,
    now: Callable[[], float],
    stable_s: float = 10.0,
) -> None:
    """Run `serve(connected)` forever, reconnecting with backoff after any of `errors`.

    `serve` calls `connected()` once its connection is up, then serves until it raises. The
    backoff starts again from its smallest delay only after a connection that lasted
    `stable_s` (monotonic seconds): a peer that accepts the connection and drops it at once
    (a broker refusing every alarm) is retried ever more slowly, not in a tight loop.
    Cancellation stops the loop and is re-raised; any other exception than `errors` is a bug
    and propagates.
    """
    up_since: float | None = None

    def connected() -> None:
        nonlocal up_since
        up_since = time.monotonic()
        status.set(LinkState.CONNECTED, now())

    task = asyncio.current_task()
    assert task is not None
    try:
        while True:
            status.set(LinkState.CONNECTING, now())
            cancelling = task.cancelling()
            try:
                await serve(connected)
                error = "connection closed"
            except errors as exc:
                error = f"{type(exc).__name__}: {exc}"
            except BaseExceptionGroup as group:
                # a TaskGroup inside `serve` wraps its tasks' errors; expected ones only back off
                matched, rest = group.split(errors)
                if rest is not None or matched is None:
                    raise
                first = matched.exceptions[0]
                error = f"{type(first).__name__}: {first}"
                _undo_stale_cancel(task, cancelling)
            if up_since is not None and time.monotonic() - up_since >= stable_s:
                backoff.reset()
            up_since = None
            delay = backoff.next()
            status.reconnects += 1
            status.set(LinkState.BACKING_OFF, now(), error)
            log.warning(
                "link=%s state=backing_off delay_s=%.2f error=%r", status.name, delay, error
            )
            await asyncio.sleep(delay)
    finally:
        status.set(LinkState.STOPPED, now())
