"""A serial bedside monitor playing a scenario: the device side of a protocol on a real port.

Each serial protocol gives a `MonitorSide`: the sans-I/O device half (built on the driver's
codec), which turns a second of scenario samples into the frames the monitor sends at that
moment and answers what the host sends (a request, an association, a poll). `SerialMonitor`
puts one on a port and plays the scenario in (simulated) time:

- ``port``: an existing serial device (a USB adapter wired null-modem to the bedside box, one
  end of a ``socat`` pair), opened with the device's line settings;
- ``pty``: a fresh pseudo-terminal pair; the simulator holds the master and makes ``pty`` a
  symlink to the slave, which is the path a driver is configured with. Unplugging closes the
  pair (the driver's reads fail, as when a USB adapter is pulled); replugging makes a new pair
  and moves the link, so the driver finds the monitor again at the same path.

Faults (`Fault`), for tests and for engineers checking a driver: random garbage before the next
frame, the next frame cut in half, the next frame corrupted (`MonitorSide.corrupt`), silence
for a while (nothing sent, nothing answered), unplug and replug.

Writes never block: a monitor does not wait for its listener, so when nobody drains the port the
kernel buffer fills and frames are lost (counted in `SerialStats.unsent`).

`SerialStats.samples` counts the scenario samples that went out on the line: each side marks
the frames it makes with the samples they carry for the first time (`Frame`), and a frame counts
once it is written whole and undamaged. A protocol carries only some parameters (Masimo ASCII 1
has no heart rate from ECG and no cuff), and a polled monitor sends only what it is asked for,
so this is usually less than the scenario's samples, and 0 while no host polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import tty
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Final, NotRequired, Protocol, Self, TypedDict

from drivers.serialport import open_port
from kernel.tasks import TaskGroupService
from kernel.vocabulary import Step
from simulators.scenarios import build_scenario

if TYPE_CHECKING:
    from drivers.link import LineSettings
    from kernel.clock import Clock
    from kernel.vocabulary import Sample

__all__ = ["Fault", "Frame", "MonitorSide", "Playing", "SerialMonitor", "SerialStats"]

_READ_SIZE: Final = 4096


class Fault(StrEnum):
    """What can go wrong on a serial line."""

    GARBAGE = "garbage"  # random bytes before the next frame
    TRUNCATE = "truncate"  # only the first half of the next frame
    CORRUPT = "corrupt"  # the next frame damaged (MonitorSide.corrupt)
    SILENCE = "silence"  # nothing sent or answered for a while
    UNPLUG = "unplug"  # the cable pulled, then plugged back in


class Frame(bytes):
    """Bytes a monitor sends, marked with how many scenario samples they carry for the first time.

    A side returns these where a frame carries samples; plain bytes carry none (a reply to an
    association, an abort).
    """

    samples: int

    def __new__(cls, data: bytes, samples: int) -> Self:
        """`data`, carrying `samples` scenario samples."""
        frame = super().__new__(cls, data)
        frame.samples = samples
        return frame


class MonitorSide(Protocol):
    """The sans-I/O device half of a serial protocol, one per connection of the cable."""

    def receive(self, data: bytes, now: float) -> list[bytes]:
        """Bytes from the host (any split); the frames to answer with."""
        ...

    def second(self, samples: Sequence[Sample], now: float) -> list[bytes]:
        """The scenario reached `now` with these samples: the frames the monitor sends now."""
        ...

    def corrupt(self, frame: bytes, rng: random.Random) -> bytes:
        """`frame` damaged as a line hit would damage it, detectably for the protocol."""
        ...


@dataclass(slots=True)
class SerialStats:
    """What a run has done so far; readable after a cancel."""

    samples: int = 0  # scenario samples sent in whole, undamaged frames (module docstring)
    frames: int = 0
    replies: int = 0
    unsent: int = 0
    faults: list[str] = field(default_factory=list)


class _Pty:
    """A pseudo-terminal pair whose slave is reached through a stable symlink."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master, self._slave = os.openpty()
        # raw: no echo, no line editing, no CR/NL translation, before any driver opens it
        tty.setraw(self._slave)
        os.set_blocking(self.master, False)
        # made beside the link and renamed over it, so the link is never missing or half-made
        tmp = link.with_name(f".{link.name}.{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(os.ttyname(self._slave))
        tmp.replace(link)

    def close(self) -> None:
        os.close(self.master)
        os.close(self._slave)


class Playing(TypedDict):
    """What a simulated monitor plays, as `SerialMonitor` and its kin take it (keywords)."""

    clock: Clock
    scenario: str
    device_id: NotRequired[str]
    seed: NotRequired[int]
    t0: NotRequired[float | None]
    until: NotRequired[float | None]
    stats: NotRequired[SerialStats | None]


class SerialMonitor(TaskGroupService):
    """A monitor on a serial port or a pty, playing a scenario; an async context manager.

    Args:
        side: makes a fresh `MonitorSide` for each connection (again after a replug).
        clock: scenario time; the scenario starts at `t0` (default `clock.now()`).
        scenario: a name from `simulators.scenarios.SCENARIOS`.
        device_id: the samples' device id (the simulator does not send it; tests compare).
        port: an existing serial device, opened with `line`.
        pty: where to make the symlink to a fresh pty's slave (exclusive with `port`).
        line: serial settings for `port` (a pty needs none).
        seed: the scenario's noise seed; faults draw from their own generator.
        until: stop after this scenario time (epoch seconds).
    """

    def __init__(  # noqa: PLR0913 - one keyword per CLI option, all keyword-only
        self,
        side: Callable[[], MonitorSide],
        *,
        clock: Clock,
        scenario: str,
        line: LineSettings | None = None,
        port: str | None = None,
        pty: Path | None = None,
        device_id: str = "mon1",
        seed: int = 1,
        t0: float | None = None,
        until: float | None = None,
        stats: SerialStats | None = None,
    ) -> None:
        if (port is None) == (pty is None):
            raise ValueError("give exactly one of port and pty")
        self._make_side = side
        self._clock = clock
        self._line = line
        self._port = port
        self._pty_link = pty
        self.t0 = clock.now() if t0 is None else t0
        self._items = build_scenario(scenario, t0=self.t0, seed=seed, device_id=device_id)
        self._until = until
        self.stats = stats if stats is not None else SerialStats()
        self._rng = random.Random(seed)  # noqa: S311 - simulated faults, not secrets
        self._pending: list[Fault] = []
        self._quiet_until = 0.0
        self._side = side()
        self._pty: _Pty | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._plugged = asyncio.Event()
        self._group: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.done = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        await self._plug()
        tg = await self._open_group()
        self._tasks = [
            tg.create_task(self._play(), name="serial-monitor.play"),
            tg.create_task(self._listen(), name="serial-monitor.listen"),
        ]
        return self

    async def _release(self) -> None:
        self._unplug()
        if self._pty_link is not None and self._pty_link.is_symlink():
            # the monitor is gone for good: leave no link to a dead pty behind
            self._pty_link.unlink()

    @property
    def path(self) -> str:
        """The path a driver opens: the pty link, or the port."""
        if self._pty_link is not None:
            return str(self._pty_link)
        assert self._port is not None
        return self._port

    async def wait(self) -> None:
        """Return when the scenario has been played."""
        await self.done.wait()

    # ------------------------------------------------------------------ faults

    def inject(self, fault: Fault) -> None:
        """Damage the next frame (garbage, truncate, corrupt)."""
        if fault in {Fault.SILENCE, Fault.UNPLUG}:
            raise ValueError(f"{fault} takes a duration: use silence() or unplug()")
        self._pending.append(fault)
        self.stats.faults.append(fault.value)

    def silence(self, seconds: float) -> None:
        """Send and answer nothing for `seconds` of real time."""
        loop = asyncio.get_running_loop()
        self._quiet_until = loop.time() + seconds
        self.stats.faults.append(Fault.SILENCE.value)

    async def unplug(self, seconds: float) -> None:
        """Pull the cable for `seconds` of real time, then plug it back in (pty only)."""
        if self._pty_link is None:
            raise ValueError("unplug needs a pty: a real port cannot be pulled from software")
        self.stats.faults.append(Fault.UNPLUG.value)
        self._unplug()
        await asyncio.sleep(seconds)
        await self._plug()

    # ------------------------------------------------------------------ internals

    async def _plug(self) -> None:
        self._side = self._make_side()
        if self._pty_link is not None:
            self._pty = _Pty(self._pty_link)
            self._reader = None
            asyncio.get_running_loop().add_reader(self._pty.master, self._on_readable)
        else:
            assert self._port is not None
            assert self._line is not None  # a real port is opened with the device's settings
            self._reader, self._writer = await open_port(self._port, self._line)
        self._plugged.set()

    def _unplug(self) -> None:
        self._plugged.clear()
        if self._pty is not None:
            asyncio.get_running_loop().remove_reader(self._pty.master)
            self._pty.close()
            self._pty = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _quiet(self) -> bool:
        return asyncio.get_running_loop().time() < self._quiet_until

    def _write(self, frames: list[bytes], *, replies: bool = False) -> None:
        if not self._plugged.is_set() or self._quiet():
            return
        for frame in frames:
            data = bytes(frame)
            while self._pending:
                fault = self._pending.pop(0)
                if fault is Fault.GARBAGE:
                    self._raw(self._rng.randbytes(self._rng.randint(1, 64)))
                elif fault is Fault.TRUNCATE:
                    data = data[: max(1, len(data) // 2)]
                else:
                    data = self._side.corrupt(data, self._rng)
            if self._raw(data):
                if replies:
                    self.stats.replies += 1
                else:
                    self.stats.frames += 1
                if data == frame:  # a cut or corrupted frame delivers none of its samples
                    self.stats.samples += getattr(frame, "samples", 0)

    def _raw(self, data: bytes) -> bool:
        if self._pty is not None:
            try:
                written = os.write(self._pty.master, data)
            except BlockingIOError:
                written = 0
            if written < len(data):
                self.stats.unsent += 1
                return False
            return True
        assert self._writer is not None
        self._writer.write(data)
        return True

    async def _play(self) -> None:
        clock = self._clock
        await self._idle_until_the_scenario()
        group: list[Sample] = []
        for item in self._items:
            if self._until is not None and item.t > self._until:
                break
            if isinstance(item, Step):
                continue
            if group and item.t != group[0].t:
                self._second(group)
                group = []
            await clock.sleep_until(item.t)
            group.append(item)
        if group:
            self._second(group)
        self.done.set()

    async def _idle_until_the_scenario(self) -> None:
        """Tick a side that keeps time of its own each second before the scenario begins.

        A side with an ``idle(now)`` method sends by its own clock, not only when the scenario
        has samples (IntelliVue's periodic extended poll, simulators/intellivue.py); the others
        say nothing before their first sample.
        """
        idle = getattr(self._side, "idle", None)
        first = next((i.t for i in self._items if not isinstance(i, Step)), None)
        if idle is None or first is None:
            return
        t = math.floor(self._clock.now()) + 1.0
        while t < first:
            await self._clock.sleep_until(t)
            self._write(idle(t))
            t += 1.0

    def _second(self, samples: list[Sample]) -> None:
        self._write(self._side.second(samples, samples[0].t))

    def _on_readable(self) -> None:
        """The pty has bytes from the host: answer them."""
        pty = self._pty
        if pty is None:
            return
        try:
            data = os.read(pty.master, _READ_SIZE)
        except BlockingIOError:
            return
        self._answer(data)

    def _answer(self, data: bytes) -> None:
        if data and not self._quiet():
            self._write(self._side.receive(data, self._clock.now()), replies=True)

    async def _listen(self) -> None:
        """Read what the host sends on a port and answer, for as long as the monitor runs."""
        while True:
            await self._plugged.wait()
            reader = self._reader
            if reader is None:
                return  # a pty is served by `_on_readable`
            data = await reader.read(_READ_SIZE)
            if not data:
                raise ConnectionError(f"port {self._port} closed")
            self._answer(data)
