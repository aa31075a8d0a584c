"""The two queues of the alarm path (monitor/queues.py): samples drop oldest, events never drop."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernel.vocabulary import Param, Sample
from monitor.queues import SampleQueue

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


async def test_put_wakes_the_consumer_and_take_all_keeps_order() -> None:
    wake = asyncio.Event()
    q = SampleQueue(maxlen=10, wake=wake)
    waiter = asyncio.create_task(wake.wait())
    await settle()
    assert not waiter.done()
    q.put(sample(1))
    q.put(sample(2))
    await asyncio.wait_for(waiter, timeout=1.0)
    assert q.take_all() == [sample(1), sample(2)]
    assert q.take_all() == []
