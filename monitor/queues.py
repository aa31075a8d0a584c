"""The two queues of the alarm path, with their drop policies stated and kept.

- `SampleQueue`: bounded; when full the *oldest* sample is dropped and counted (samples may be
  lost under overload, ARCHITECTURE.md "Data flow").
- `EventQueue`: never drops; alarm events wait here until the publisher has them durably.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

from monitor.vocabulary import Sample

__all__ = ["EventQueue", "SampleQueue"]

T = TypeVar("T")


class SampleQueue:
    """Bounded FIFO of samples; `put` never blocks, it drops the oldest when full."""

    def __init__(self, maxlen: int) -> None:
        if maxlen < 1:
            raise ValueError("maxlen must be at least 1")
        self._items: deque[Sample] = deque(maxlen=maxlen)
        self._ready = asyncio.Event()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, sample: Sample) -> None:
        """Enqueue; when full the oldest sample is dropped and counted in `dropped`."""
        if len(self._items) == self._items.maxlen:
            self.dropped += 1
        self._items.append(sample)
        self._ready.set()

    def take_all(self) -> list[Sample]:
        """Take every queued sample, oldest first, without waiting."""
        batch = list(self._items)
        self._items.clear()
        return batch

    async def get_batch(self) -> list[Sample]:
        """Wait for at least one sample, then take every queued sample, oldest first."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        batch = list(self._items)
        self._items.clear()
        return batch


class EventQueue(Generic[T]):
    """Unbounded FIFO that never drops (alarm events are few and must never be lost)."""

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> None:
        """Enqueue."""
        self._items.append(item)
        self._ready.set()

    async def get(self) -> T:
        """Wait for and take the oldest item."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()
