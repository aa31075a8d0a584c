"""The two queues of the alarm path (monitor/queues.py): samples drop oldest, events never drop."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.queues import EventQueue, SampleQueue
from monitor.vocabulary import Param, Sample

T0 = 1767225600.0


def sample(i: int) -> Sample:
    return Sample(t=T0 + i, param=Param.HR, value=60.0 + i % 100, valid=True, device_id="mon1")


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_sample_queue_drops_the_oldest_when_full_and_counts() -> None:
    q = SampleQueue(maxlen=3)
    for i in range(5):
        q.put(sample(i))
    assert len(q) == 3
    assert q.dropped == 2
    assert q.take_all() == [sample(2), sample(3), sample(4)]
    assert len(q) == 0
    assert q.take_all() == []
    assert q.dropped == 2  # taking does not count as dropping


def test_sample_queue_counts_nothing_below_its_bound() -> None:
    q = SampleQueue(maxlen=3)
    for i in range(3):
        q.put(sample(i))
    assert q.dropped == 0
    assert q.take_all() == [sample(0), sample(1), sample(2)]
    q.put(sample(3))
    assert q.dropped == 0  # room again after taking


@given(maxlen=st.integers(min_value=1, max_value=20), n=st.integers(min_value=0, max_value=60))
def test_sample_queue_keeps_the_newest_maxlen(maxlen: int, n: int) -> None:
    q = SampleQueue(maxlen=maxlen)
    for i in range(n):
        q.put(sample(i))
    assert q.dropped == max(0, n - maxlen)
    assert q.take_all() == [sample(i) for i in range(max(0, n - maxlen), n)]


@pytest.mark.parametrize("maxlen", [0, -1])
def test_sample_queue_needs_room(maxlen: int) -> None:
    with pytest.raises(ValueError, match="maxlen"):
        SampleQueue(maxlen=maxlen)


async def test_get_batch_waits_then_takes_everything_in_order() -> None:
    q = SampleQueue(maxlen=10)
    task = asyncio.create_task(q.get_batch())
    await settle()
    assert not task.done()
    q.put(sample(0))
    q.put(sample(1))
    assert await asyncio.wait_for(task, timeout=1.0) == [sample(0), sample(1)]
    assert len(q) == 0


async def test_get_batch_returns_at_once_when_samples_wait() -> None:
    q = SampleQueue(maxlen=2)
    for i in range(4):
        q.put(sample(i))
    assert await asyncio.wait_for(q.get_batch(), timeout=1.0) == [sample(2), sample(3)]
    assert q.dropped == 2
    # and waits again once empty
    task = asyncio.create_task(q.get_batch())
    await settle()
    assert not task.done()
    q.put(sample(9))
    assert await asyncio.wait_for(task, timeout=1.0) == [sample(9)]


async def test_get_batch_after_take_all_waits_for_new_samples() -> None:
    q = SampleQueue(maxlen=5)
    q.put(sample(0))
    assert q.take_all() == [sample(0)]
    task = asyncio.create_task(q.get_batch())
    await settle()
    assert not task.done()  # the earlier put must not wake it with nothing to take
    q.put(sample(1))
    assert await asyncio.wait_for(task, timeout=1.0) == [sample(1)]


def test_event_queue_never_drops() -> None:
    q: EventQueue[int] = EventQueue()
    for i in range(100_000):
        q.put(i)
    assert len(q) == 100_000


async def test_event_queue_is_fifo_and_waits_when_empty() -> None:
    q: EventQueue[str] = EventQueue()
    for item in ("a", "b", "c"):
        q.put(item)
    assert [await q.get() for _ in range(3)] == ["a", "b", "c"]
    assert len(q) == 0
    task = asyncio.create_task(q.get())
    await settle()
    assert not task.done()
    q.put("d")
    assert await asyncio.wait_for(task, timeout=1.0) == "d"


async def test_event_queue_keeps_everything_for_a_slow_consumer() -> None:
    q: EventQueue[int] = EventQueue()
    got: list[int] = []

    async def consumer() -> None:
        while len(got) < 1000:
            got.append(await q.get())
            await asyncio.sleep(0)

    task = asyncio.create_task(consumer())
    for i in range(1000):
        q.put(i)
    await asyncio.wait_for(task, timeout=5.0)
    assert got == list(range(1000))
