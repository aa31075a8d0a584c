"""The injectable clocks of kernel/clock.py (docs/ARCHITECTURE.md "Data flow")."""

from __future__ import annotations

import asyncio
import time
import types

import pytest

from kernel.clock import Clock, ManualClock, RealClock, SimulatedClock

T0 = 1767225600.0


class FakeWall:
    """Stands in for the `time` module inside kernel.clock: the wall clock moves when told."""

    def __init__(self, t: float) -> None:
        self.t = t

    def time(self) -> float:
        return self.t


@pytest.fixture
def wall(monkeypatch: pytest.MonkeyPatch) -> FakeWall:
    fake = FakeWall(T0)
    monkeypatch.setattr("kernel.clock.time", types.SimpleNamespace(time=fake.time))
    return fake


async def settle() -> None:
    """Let woken tasks run (a few loop iterations, no real time)."""
    for _ in range(5):
        await asyncio.sleep(0)


# ---------------------------------------------------------------- RealClock


def test_real_clock_reads_the_wall_clock() -> None:
    before = time.time()
    now = RealClock().now()
    after = time.time()
    assert before <= now <= after
    assert RealClock().speed == 1.0


async def test_real_clock_sleeps_until_the_time() -> None:
    clock = RealClock()
    target = time.time() + 0.05
    await clock.sleep_until(target)
    assert time.time() >= target


async def test_real_clock_past_time_returns_at_once() -> None:
    start = time.monotonic()
    await RealClock().sleep_until(time.time() - 3600)
    assert time.monotonic() - start < 0.05


# ---------------------------------------------------------------- SimulatedClock


def test_simulated_clock_runs_speed_times_faster_from_a_past_anchor(wall: FakeWall) -> None:
    anchor = T0 - 100.0  # 100 real seconds ago
    clock = SimulatedClock(speed=10.0, anchor=anchor)
    assert clock.speed == 10.0
    assert clock.anchor == anchor
    assert clock.now() == T0 + 900.0  # 100 s of wall time are 1000 s of simulated time
    wall.t += 2.5
    assert clock.now() == T0 + 925.0


def test_simulated_clock_equals_real_time_at_its_anchor(wall: FakeWall) -> None:
    clock = SimulatedClock(speed=60.0, anchor=T0)
    assert clock.now() == T0
    wall.t = T0 + 1.0
    assert clock.now() == T0 + 60.0


def test_simulated_clock_default_anchor_is_start_up(wall: FakeWall) -> None:
    clock = SimulatedClock(speed=4.0)
    assert clock.anchor == T0
    assert clock.now() == T0
    wall.t = T0 + 3.0
    assert clock.now() == T0 + 12.0


def test_two_simulated_clocks_with_one_anchor_agree(wall: FakeWall) -> None:
    anchor = T0 - 30.0
    first = SimulatedClock(speed=20.0, anchor=anchor)
    wall.t = T0 + 7.0  # the second process starts later
    second = SimulatedClock(speed=20.0, anchor=anchor)
    for step in (0.0, 0.25, 11.0, 600.0):
        wall.t = T0 + 7.0 + step
        assert first.now() == second.now() == anchor + (wall.t - anchor) * 20.0


def test_two_real_simulated_clocks_with_one_anchor_agree() -> None:
    anchor = time.time() - 5.0
    a = SimulatedClock(speed=30.0, anchor=anchor)
    b = SimulatedClock(speed=30.0, anchor=anchor)
    ta = a.now()
    tb = b.now()
    ta2 = a.now()
    assert ta <= tb <= ta2
    assert ta2 - ta < 1.0


@pytest.mark.parametrize("speed", [0.0, -1.0])
def test_simulated_clock_refuses_a_speed_that_is_not_positive(speed: float) -> None:
    with pytest.raises(ValueError, match="speed"):
        SimulatedClock(speed=speed, anchor=T0)


async def test_simulated_clock_sleeps_in_simulated_time() -> None:
    clock = SimulatedClock(speed=1000.0, anchor=time.time() - 1.0)
    target = clock.now() + 20.0  # 20 simulated seconds: 20 ms of wall time
    start = time.monotonic()
    await clock.sleep_until(target)
    assert clock.now() >= target
    assert time.monotonic() - start < 2.0


async def test_simulated_clock_past_time_returns_at_once() -> None:
    clock = SimulatedClock(speed=0.001, anchor=time.time())  # almost stopped
    start = time.monotonic()
    await clock.sleep_until(clock.now() - 10.0)
    assert time.monotonic() - start < 0.05


# ---------------------------------------------------------------- ManualClock


def test_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock(T0)
    assert clock.now() == T0
    clock.advance(1.5)
    assert clock.now() == T0 + 1.5
    clock.set(T0 + 10.0)
    assert clock.now() == T0 + 10.0
    clock.set(T0 + 10.0)  # standing still is not running backwards
    assert clock.now() == T0 + 10.0


def test_manual_clock_refuses_to_run_backwards() -> None:
    clock = ManualClock(T0)
    with pytest.raises(ValueError, match="backwards"):
        clock.set(T0 - 0.001)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1.0)
    assert clock.now() == T0


async def test_manual_clock_wakes_sleepers_in_deadline_order_exactly_on_time() -> None:
    clock = ManualClock(T0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, t: float) -> None:
        await clock.sleep_until(t)
        woke.append((name, clock.now()))

    # created out of deadline order
    tasks = [
        asyncio.create_task(sleeper("c", T0 + 30.0)),
        asyncio.create_task(sleeper("a", T0 + 10.0)),
        asyncio.create_task(sleeper("b", T0 + 20.0)),
        asyncio.create_task(sleeper("d", T0 + 40.0)),
    ]
    await settle()
    assert woke == []

    clock.advance(9.999)
    await settle()
    assert woke == []  # never before its time

    clock.set(T0 + 10.0)  # exactly a's deadline
    await settle()
    assert woke == [("a", T0 + 10.0)]

    clock.set(T0 + 35.0)  # passes b and c at once: both wake, in deadline order
    await settle()
    assert woke == [("a", T0 + 10.0), ("b", T0 + 35.0), ("c", T0 + 35.0)]
    assert not tasks[3].done()

    clock.advance(5.0)
    await settle()
    assert [name for name, _ in woke] == ["a", "b", "c", "d"]
    await asyncio.gather(*tasks)


async def test_manual_clock_equal_deadlines_wake_in_arrival_order() -> None:
    clock = ManualClock(T0)
    woke: list[int] = []

    async def sleeper(i: int) -> None:
        await clock.sleep_until(T0 + 5.0)
        woke.append(i)

    tasks = [asyncio.create_task(sleeper(i)) for i in range(5)]
    await settle()
    clock.advance(5.0)
    await asyncio.gather(*tasks)
    assert woke == [0, 1, 2, 3, 4]


async def test_manual_clock_past_or_present_time_returns_at_once() -> None:
    clock = ManualClock(T0)
    for t in (T0 - 100.0, T0):
        task = asyncio.create_task(clock.sleep_until(t))
        await settle()
        assert task.done()
        await task
    assert clock.now() == T0


async def test_manual_clock_survives_a_cancelled_sleeper() -> None:
    clock = ManualClock(T0)
    cancelled = asyncio.create_task(clock.sleep_until(T0 + 1.0))
    kept = asyncio.create_task(clock.sleep_until(T0 + 2.0))
    await settle()
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    clock.set(T0 + 5.0)
    await settle()
    assert kept.done()
    await kept


async def test_every_clock_satisfies_the_protocol() -> None:
    clocks: list[Clock] = [RealClock(), SimulatedClock(speed=2.0), ManualClock(T0)]
    for clock in clocks:
        now = clock.now()
        await asyncio.wait_for(clock.sleep_until(now - 1.0), timeout=1.0)
        assert clock.speed > 0
