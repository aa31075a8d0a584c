"""The driver contract: what every device driver offers the supervisor.

A driver *has* a transport (a serial port, an MQTT subscription) and a sans-I/O codec. `run`
streams samples into a sink until it is cancelled, or raises `DeviceError` when the device is
lost. A driver never loops to reconnect: the supervisor owns reconnection (docs/DESIGN.md P9).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from kernel.vocabulary import Sample

__all__ = ["DeviceError", "Driver", "DriverBase", "DriverStats", "SampleSink", "nothing"]


def nothing() -> None:
    """The default `connected` callback: nobody is waiting for the connection."""


class DeviceError(Exception):
    """The device or its transport is gone; the supervisor decides what happens next."""


class SampleSink(Protocol):
    """Where a driver delivers samples. `put` never blocks (bounded, drop-oldest, counted)."""

    def put(self, sample: Sample) -> None:
        """Hand over one sample."""


@dataclass
class DriverStats:
    """Counters a driver keeps about its stream; exported as metrics."""

    frames: int = 0
    samples: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    def drop(self, reason: str, n: int = 1) -> None:
        """Count `n` frames (or messages) dropped for `reason`."""
        self.dropped[reason] += n


class Driver(Protocol):
    """A running connection to one device."""

    @property
    def device_id(self) -> str:
        """The configured device id."""
        ...

    @property
    def stats(self) -> DriverStats:
        """Frame, sample and drop counters, kept across reconnects."""
        ...

    async def run(self, sink: SampleSink, connected: Callable[[], None] = nothing) -> None:
        """Connect, call `connected()` once data can flow, then stream into `sink` until cancelled.

        Raises:
            DeviceError: the connection was lost or could not be made.
        """
        ...


class _Identified(Protocol):
    @property
    def device_id(self) -> str: ...


class DriverBase:
    """What every driver keeps alike: its settings and its counters.

    The driver's constructor sets `_settings` (which name the device) and `_stats`.
    """

    _settings: _Identified
    _stats: DriverStats

    @property
    def device_id(self) -> str:
        """The configured device id."""
        return self._settings.device_id

    @property
    def stats(self) -> DriverStats:
        """Frame, sample and drop counters, kept across runs."""
        return self._stats
