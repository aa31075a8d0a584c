"""What the byte-stream drivers share: running a `LinkProtocol` over an asyncio stream.

`StreamDriver` is the base of the serial driver (`drivers/serialport.py`) and the TCP driver
(`drivers/tcp.py`); each opens its transport and hands the reader and writer to `_serve`, so
liveness, the timer and writes work one way for every device (docs/DESIGN.md P1, P7).

Liveness: a device is connected once a valid frame arrives (`DriverStats.frames` moves) and
lost when no valid frame arrived for its quiet time; garbage does not count as data. Loss, a
transport that closes, a write held past ``timeouts.serial_write_s`` and a protocol that ends
its session (`ProtocolError`) raise `DeviceError`; the supervisor reconnects (docs/DESIGN.md P9).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, ClassVar, Final, Generic, Protocol, TypeVar

from drivers.base import DeviceError, DriverBase, DriverStats
from drivers.link import ProtocolError
from drivers.samples import DeterminationMemory
from drivers.spec import load
from kernel.tasks import raise_if_cancelled

if TYPE_CHECKING:
    from collections.abc import Callable

    from drivers.base import SampleSink
    from drivers.link import LinkProtocol
    from drivers.spec import DeviceSpec
    from kernel.clock import Clock
    from kernel.settings import BrokerSettings, TimeoutSettings

__all__ = ["StreamDriver", "StreamSettings"]

_log = logging.getLogger("vigil.drivers")

# One read takes whatever the transport has, up to this; 115200 baud fills ~11 kB a second.
_READ_SIZE: Final = 4096


class StreamSettings(Protocol):
    """What a byte-stream driver reads from its settings."""

    @property
    def device_id(self) -> str: ...  # noqa: D102

    @property
    def quiet_s(self) -> float | None: ...  # noqa: D102

    def connection(self) -> str: ...  # noqa: D102


_S = TypeVar("_S", bound=StreamSettings)


class StreamDriver(DriverBase, Generic[_S]):
    """A device's `LinkProtocol` over a byte stream; subclasses open the transport.

    A device's driver sets `spec` (its device spec: the quiet time, the config's ``quiet_s``
    overriding it) and `timer_s`; `protocol()` makes the spec's link unless the driver says
    otherwise. The transport's settings (`_S`) are `_settings`. Counters (`stats`, kept across
    runs): ``frames`` valid frames, ``samples`` delivered samples, ``dropped`` by the codec's
    reasons.
    """

    spec: ClassVar[DeviceSpec]
    _settings: _S
    # Daemon-clock seconds between `LinkProtocol.timer` calls; with a simulated clock this runs
    # faster in real time, as the simulated monitor does.
    timer_s: ClassVar[float] = 1.0
    # The device repeats its last NIBP determination in every message (ANSAR-B, Mindray HL7):
    # the link is given the driver's `DeterminationMemory`, kept across connections, so a
    # reconnect does not pass the same cuff reading on as a new one.
    remembers_determinations: ClassVar[bool] = False
    _determinations: DeterminationMemory | None = None

    def __init__(
        self,
        settings: _S,
        /,
        *,
        broker: BrokerSettings,  # noqa: ARG002 - the registry's constructor contract
        timeouts: TimeoutSettings,
        clock: Clock,
    ) -> None:
        self._settings = settings
        self._timeouts = timeouts
        self._clock = clock
        self._stats = DriverStats()
        assert self.spec.quiet_s is not None  # a byte-stream device's spec names its quiet time
        self._quiet_s = settings.quiet_s if settings.quiet_s is not None else self.spec.quiet_s

    def protocol(self) -> LinkProtocol:
        """A fresh session for one connection: the spec's link, given the driver's `stats`.

        `DeviceSpec.link` is a class taking the device id and the counters, and the driver's
        `DeterminationMemory` where it `remembers_determinations`; a driver whose link takes
        more says so by its own `protocol()`.
        """
        assert self.spec.link is not None  # a byte-stream device's spec names its link
        make = load(self.spec.link)
        if not self.remembers_determinations:
            link: LinkProtocol = make(self.device_id, self.stats)
            return link
        if self._determinations is None:
            self._determinations = DeterminationMemory()
        remembering: LinkProtocol = make(self.device_id, self.stats, self._determinations)
        return remembering

    async def _serve(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        sink: SampleSink,
        connected: Callable[[], None],
    ) -> None:
        """Run a fresh protocol over `reader` and `writer` until the device is lost."""
        where = f"{self.device_id}: {self._settings.connection()}"
        loop = asyncio.get_running_loop()
        clock = self._clock
        stats = self._stats
        proto = self.protocol()
        # timer period in real seconds: the daemon clock may run faster than the wall clock
        period = self.timer_s / clock.speed
        await self._send(writer, proto.start(clock.now()))
        frames = stats.frames
        last_frame = loop.time()
        next_timer = loop.time() + period
        up = False
        while True:
            deadline = last_frame + self._quiet_s
            wake = min(deadline, next_timer)
            data: bytes | None = None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(wake):
                    data = await reader.read(_READ_SIZE)
                    if not data:
                        raise DeviceError(f"{where}: closed")
            raise_if_cancelled()
            now = clock.now()
            if data:
                got = proto.receive(data, now)
                for sample in got.samples:
                    sink.put(sample)
                stats.samples += len(got.samples)
                await self._send(writer, got.reply)
            if stats.frames != frames:
                frames = stats.frames
                last_frame = loop.time()
                if not up:
                    up = True
                    _log.info("event=data_flowing device=%s at=%s", self.device_id, where)
                    connected()
            elif loop.time() >= deadline:
                raise DeviceError(f"{where}: no valid frame for {self._quiet_s:g} s")
            if loop.time() >= next_timer:
                next_timer += period
                if next_timer <= loop.time():
                    # a stalled loop skips missed ticks rather than bursting polls at the device
                    next_timer = loop.time() + period
                await self._send(writer, proto.timer(now))

    async def _serve_then_close(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        sink: SampleSink,
        connected: Callable[[], None],
        where: str,
        *,
        errors: tuple[type[Exception], ...],
        held: str,
    ) -> None:
        """`_serve` an open stream; its transport's `errors` and the link's end as `DeviceError`.

        `held` words a write held past ``serial_write_s``. The stream is closed on the way out,
        and its closing waited for: the transport closes in a task of its own, and a run that
        ended leaves nothing behind, so the port or address can be opened again at once.
        """
        try:
            await self._serve(reader, writer, sink, connected)
        except errors as exc:
            raise DeviceError(f"{where}: {exc or type(exc).__name__}") from exc
        except ProtocolError as exc:
            raise DeviceError(f"{where}: {exc}") from exc
        except TimeoutError as exc:
            raise DeviceError(f"{where}: {held} over {self._timeouts.serial_write_s} s") from exc
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._timeouts.serial_write_s):
                    await writer.wait_closed()

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        if data:
            writer.write(data)
            async with asyncio.timeout(self._timeouts.serial_write_s):
                await writer.drain()
