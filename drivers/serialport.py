"""The async serial driver: any device's `LinkProtocol` (drivers/link.py) over a serial port.

Each serial device folder (`drivers/masimo`, `drivers/intellivue`, ...) has a sans-I/O codec,
a `LinkProtocol` and a spec naming its line settings and quiet time (`drivers/<device>/spec.py`).
`SerialDriver` *has* the transport (pyserial-asyncio-fast) and runs the protocol over it with
`drivers.stream.StreamDriver`, so the device folders hold no I/O of their own (docs/DESIGN.md
P1, P7). Besides what `StreamDriver` raises, a port that vanishes or cannot be opened raises
`DeviceError`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import serial
import serial_asyncio_fast

from drivers.base import DeviceError, nothing
from drivers.link import line_for
from drivers.spec import SerialSettings
from drivers.stream import StreamDriver

if TYPE_CHECKING:
    from collections.abc import Callable

    from drivers.base import SampleSink
    from drivers.link import LineSettings

__all__ = ["SerialDriver", "open_port"]

_log = logging.getLogger("vigil.drivers")


async def open_port(
    port: str, line: LineSettings
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open `port` (any pyserial URL) with `line`, as `line_for` adapts it to a pty.

    The one place pyserial opens a port: the serial driver and the serial simulator
    (simulators/serial_monitor.py) both come here.

    Raises:
        OSError, serial.SerialException, ValueError: the port cannot be opened.
    """
    settings = line_for(port, line)
    return await serial_asyncio_fast.open_serial_connection(
        url=port,
        baudrate=settings.baudrate,
        bytesize=settings.bytesize,
        parity=settings.parity,
        stopbits=settings.stopbits,
        rtscts=settings.rtscts,
    )


class SerialDriver(StreamDriver[SerialSettings]):
    """Runs a device's `LinkProtocol` over a serial port; subclasses name the device.

    A subclass sets `spec` (its line settings, quiet time and link) and `timer_s`, and
    `protocol()` where its link takes more than the spec's. ``port`` is any pyserial URL: a
    device path (``/dev/ttyUSB0``, a pty or its symlink) or ``socket://host:port`` for a
    serial-over-LAN terminal server.
    """

    @property
    def port(self) -> str:
        """The configured port."""
        return self._settings.port

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
                reader, writer = await open_port(self.port, self.spec.serial_line)
        except (OSError, serial.SerialException, ValueError) as exc:
            raise DeviceError(f"{where}: cannot open: {exc}") from exc
        except TimeoutError as exc:
            raise DeviceError(f"{where}: open took over {self._timeouts.serial_write_s} s") from exc
        _log.info(
            "event=port_open device=%s port=%s baud=%d", self.device_id, self.port, line.baudrate
        )
        await self._serve_then_close(
            reader,
            writer,
            sink,
            connected,
            where,
            errors=(OSError, serial.SerialException),
            held="write held by flow control",
        )
