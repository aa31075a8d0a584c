"""The async serial driver: any device's `LinkProtocol` (drivers/link.py) over a serial port.

Each serial device folder (`drivers/masimo`, `drivers/intellivue`, ...) has a sans-I/O codec,
a `LinkProtocol` and a spec naming its line settings and quiet time (`drivers/<device>/spec.py`).
`SerialDriver` *has* the transport (pyserial-asyncio-fast) and runs the protocol over it, so the
device folders hold no I/O of their own (docs/DESIGN.md P1, P7).

Liveness: a device is connected once a valid frame arrives (`DriverStats.frames` moves) and
lost when no valid frame arrived for its quiet time; garbage does not count as data. Loss,
a port that vanishes or cannot be opened, a write that flow control holds past
``timeouts.serial_write_s``, and a protocol that ends its session (`ProtocolError`) all raise
`DeviceError`; the supervisor reconnects (docs/DESIGN.md P9).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, ClassVar, Final

import serial
import serial_asyncio_fast

from drivers.base import DeviceError, DriverStats, nothing
from drivers.link import ProtocolError, line_for
from kernel.tasks import raise_if_cancelled

if TYPE_CHECKING:
    from collections.abc import Callable

    from drivers.base import SampleSink
    from drivers.link import LinkProtocol
    from drivers.spec import DeviceSpec, SerialSettings
    from kernel.clock import Clock
    from kernel.settings import BrokerSettings, TimeoutSettings

__all__ = ["SerialDriver"]

_log = logging.getLogger("vigil.drivers")

# One read takes whatever the port has, up to this; a 115200 baud line fills ~11 kB a second.
_READ_SIZE: Final = 4096


class SerialDriver:
    """Runs a device's `LinkProtocol` over a serial port; subclasses name the device.

    A subclass sets `spec` (its device spec: line settings and quiet time, the config's
    ``quiet_s`` overriding the latter) and `timer_s`, and implements `protocol()`.
    ``port`` is any pyserial URL: a device path (``/dev/ttyUSB0``, a pty or its symlink) or
    ``socket://host:port`` for a serial-over-LAN terminal server.

    Counters (`stats`, kept across runs): ``frames`` valid frames, ``samples`` delivered
    samples, ``dropped`` by the codec's reasons.
    """

    spec: ClassVar[DeviceSpec]
    # Daemon-clock seconds between `LinkProtocol.timer` calls; with a simulated clock this runs
    # faster in real time, as the simulated monitor does.
    timer_s: ClassVar[float] = 1.0

    def __init__(
        self,
        settings: SerialSettings,
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
        assert self.spec.quiet_s is not None  # a serial device's spec names its quiet time
        self._quiet_s = settings.quiet_s if settings.quiet_s is not None else self.spec.quiet_s

    @property
    def device_id(self) -> str:
        """The configured device id."""
        return self._settings.device_id

    @property
    def stats(self) -> DriverStats:
        """Frame, sample and drop counters, kept across runs."""
        return self._stats

    @property
    def port(self) -> str:
        """The configured port."""
        return self._settings.port

    def protocol(self) -> LinkProtocol:
        """A fresh session for one connection."""
        raise NotImplementedError

    async def run(self, sink: SampleSink, connected: Callable[[], None] = nothing) -> None:
        """Open the port, run the protocol, call `connected()` at the first valid frame.

        Streams into `sink` until cancelled (the port is closed and the cancellation goes on).

        Raises:
            DeviceError: the port cannot be opened or is gone, the device stayed silent past
                its quiet time, a write was held past ``timeouts.serial_write_s``, or the
                device ended the session.
        """
        where = f"{self.device_id}: port {self.port}"
        line = line_for(self.port, self.spec.serial_line)
        try:
            async with asyncio.timeout(self._timeouts.serial_write_s):
                reader, writer = await serial_asyncio_fast.open_serial_connection(
                    url=self.port,
                    baudrate=line.baudrate,
                    bytesize=line.bytesize,
                    parity=line.parity,
                    stopbits=line.stopbits,
                    rtscts=line.rtscts,
                )
        except (OSError, serial.SerialException, ValueError) as exc:
            raise DeviceError(f"{where}: cannot open: {exc}") from exc
        except TimeoutError as exc:
            raise DeviceError(f"{where}: open took over {self._timeouts.serial_write_s} s") from exc
        _log.info(
            "event=port_open device=%s port=%s baud=%d", self.device_id, self.port, line.baudrate
        )
        try:
            await self._serve(reader, writer, sink, connected)
        except (OSError, serial.SerialException) as exc:
            raise DeviceError(f"{where}: {exc or type(exc).__name__}") from exc
        except ProtocolError as exc:
            raise DeviceError(f"{where}: {exc}") from exc
        except TimeoutError as exc:
            raise DeviceError(
                f"{where}: write held by flow control over {self._timeouts.serial_write_s} s"
            ) from exc
        finally:
            writer.close()
            # the transport closes the port in a task of its own; wait for it, so a run that
            # ended leaves nothing behind and the port can be opened again at once
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._timeouts.serial_write_s):
                    await writer.wait_closed()

    async def _serve(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        sink: SampleSink,
        connected: Callable[[], None],
    ) -> None:
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
                        raise DeviceError(f"{self.device_id}: port {self.port}: closed")
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
                    _log.info("event=data_flowing device=%s port=%s", self.device_id, self.port)
                    connected()
            elif loop.time() >= deadline:
                raise DeviceError(
                    f"{self.device_id}: port {self.port}: no valid frame for {self._quiet_s:g} s"
                )
            if loop.time() >= next_timer:
                next_timer += period
                if next_timer <= loop.time():
                    # a stalled loop skips missed ticks rather than bursting polls at the device
                    next_timer = loop.time() + period
                await self._send(writer, proto.timer(now))

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        if data:
            writer.write(data)
            async with asyncio.timeout(self._timeouts.serial_write_s):
                await writer.drain()
