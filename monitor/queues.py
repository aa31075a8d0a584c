"""The sample queue of the alarm path, with its drop policy stated and kept.

`SampleQueue` is bounded: when it is full the *oldest* sample is dropped and counted (samples may
be lost under overload, docs/ARCHITECTURE.md "Data flow"). Alarm events never use it: they wait
in the ward link's outbox until the broker has them.
"""

from __future__ import annotations

import asyncio
from collections import deque

from kernel.vocabulary import Sample

__all__ = ["SampleQueue"]


class SampleQueue:
    """Bounded FIFO of samples; `put` never blocks, it drops the oldest when full.

    `wake`, if given, is set on every put so a consumer can wait for it.
    """

    def __init__(self, maxlen: int, wake: asyncio.Event | None = None) -> None:
        if maxlen < 1:
            raise ValueError("maxlen must be at least 1")
        self._items: deque[Sample] = deque(maxlen=maxlen)
        self._wake = wake
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, sample: Sample) -> None:
        """Enqueue; when full the oldest sample is dropped and counted in `dropped`."""
        if len(self._items) == self._items.maxlen:
            self.dropped += 1
        self._items.append(sample)
        if self._wake is not None:
            self._wake.set()

    def take_all(self) -> list[Sample]:
        """Take every queued sample, oldest first, without waiting."""
        batch = list(self._items)
        self._items.clear()
        return batch
