"""One injectable clock, used everywhere a time is read or waited for.

`t` is epoch seconds UTC (docs/ARCHITECTURE.md "Data flow"). Simulations run faster than real
time by sharing one `SimulatedClock`; tests drive a `ManualClock` and never sleep for real.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "RealClock", "SimulatedClock", "make_clock"]


class Clock(Protocol):
    """Where time comes from."""

    @property
    def speed(self) -> float:
        """Clock seconds per real second (1 but for simulations)."""
        ...

    def now(self) -> float:
        """Epoch seconds UTC."""
        ...

    async def sleep_until(self, t: float) -> None:
        """Return once `now() >= t` (at once if it already is)."""
        ...


class RealClock:
    """Wall-clock time."""

    speed = 1.0

    def now(self) -> float:
        """Epoch seconds UTC from the system clock."""
        return time.time()

    async def sleep_until(self, t: float) -> None:
        """Sleep on the event loop until the wall clock reaches `t`."""
        # re-check after waking: the loop's timer may fire a hair early against the wall clock
        while (delay := t - time.time()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(delay)


class SimulatedClock:
    """Epoch time that runs `speed` times faster than the wall clock after `anchor`.

    `now() = anchor + (wall - anchor) * speed`: at the wall-clock instant `anchor` simulated
    time equals real time, then it runs ahead. Processes that are given the same `anchor` and
    `speed` agree on the time without talking to each other (simulator, daemon, console).
    """

    def __init__(self, *, speed: float, anchor: float | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self._speed = speed
        self._anchor = time.time() if anchor is None else anchor

    @property
    def speed(self) -> float:
        """How many simulated seconds pass per real second."""
        return self._speed

    @property
    def anchor(self) -> float:
        """The wall-clock instant at which simulated and real time agree."""
        return self._anchor

    def now(self) -> float:
        """Simulated epoch seconds."""
        return self._anchor + (time.time() - self._anchor) * self._speed

    async def sleep_until(self, t: float) -> None:
        """Sleep for the real time it takes simulated time to reach `t`."""
        while (delay := t - self.now()) > 0:  # noqa: ASYNC110 - re-check, as in RealClock
            await asyncio.sleep(delay / self._speed)


class ManualClock:
    """A clock that moves only when told to; sleepers wake as `advance`/`set` pass their time."""

    speed = 1.0

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._ids = itertools.count()

    def now(self) -> float:
        """The time last set."""
        return self._now

    def set(self, t: float) -> None:
        """Move time forward to `t` and wake everyone whose deadline has come."""
        if t < self._now:
            raise ValueError("a clock never runs backwards")
        self._now = t
        while self._sleepers and self._sleepers[0][0] <= t:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    def advance(self, dt: float) -> None:
        """Move time forward by `dt` seconds."""
        self.set(self._now + dt)

    async def sleep_until(self, t: float) -> None:
        """Wait until `set`/`advance` reaches `t`."""
        if t <= self._now:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (t, next(self._ids), fut))
        await fut


def make_clock(speed: float, anchor: float | None) -> Clock:
    """The one clock factory: the wall clock at speed 1 without an anchor, else a `SimulatedClock`.

    Processes given the same `anchor` and `speed` (the bed config's ``[clock]``, the simulator's
    ``--speed``/``--anchor``) share one simulated time.
    """
    if speed == 1 and anchor is None:
        return RealClock()
    return SimulatedClock(speed=speed, anchor=anchor)
