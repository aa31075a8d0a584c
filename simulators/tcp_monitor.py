"""A network monitor playing a scenario: the device side of a protocol on a real TCP connection.

`TcpMonitor` is `simulators.serial_monitor.SerialMonitor` with a TCP client for a cable: the
monitor connects to the host and port it is configured with (where Vigil's driver listens, as
a Mindray monitor's HL7 output is set up), and connects again whenever the connection is lost.
The faults are the serial monitor's: garbage, truncate and corrupt damage the next frame,
silence sends and answers nothing while the connection stays up, and unplug drops the
connection and stays away for a while, as a pulled network cable does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Final, Unpack

from simulators.serial_monitor import Fault, MonitorSide, Playing, SerialMonitor

__all__ = ["TcpMonitor"]

_READ_SIZE: Final = 4096
# how often a monitor tries again to reach a host that does not answer
_RETRY_S: Final = 0.05


class TcpMonitor(SerialMonitor):
    """A monitor that connects to `host`:`port` and plays a scenario; an async context manager.

    Arguments as `SerialMonitor`'s, with the TCP address instead of a port or pty.
    """

    def __init__(
        self,
        side: Callable[[], MonitorSide],
        *,
        host: str,
        port: int,
        **playing: Unpack[Playing],
    ) -> None:
        super().__init__(side, port=f"{host}:{port}", **playing)
        self._host = host
        self._tcp_port = port
        self._away_until = 0.0

    async def _plug(self) -> None:
        """Nothing yet: `_listen` connects, and connects again after a loss."""

    def _unplug(self) -> None:
        self._plugged.clear()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    async def unplug(self, seconds: float) -> None:
        """Drop the connection and stay away for `seconds` of real time."""
        self.stats.faults.append(Fault.UNPLUG.value)
        self._away_until = asyncio.get_running_loop().time() + seconds
        self._unplug()
        await asyncio.sleep(seconds)

    async def _listen(self) -> None:
        """Connect, answer what the host sends, and connect again when the connection is lost."""
        loop = asyncio.get_running_loop()
        while True:
            if loop.time() < self._away_until:
                await asyncio.sleep(self._away_until - loop.time())
                continue
            try:
                reader, writer = await asyncio.open_connection(self._host, self._tcp_port)
            except OSError:
                await asyncio.sleep(_RETRY_S)
                continue
            self._side = self._make_side()
            self._reader, self._writer = reader, writer
            self._plugged.set()
            try:
                while data := await reader.read(_READ_SIZE):
                    self._answer(data)
            except OSError:
                pass  # the connection broke: the monitor connects again
            finally:
                self._unplug()
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
