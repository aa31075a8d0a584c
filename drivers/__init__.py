"""Device drivers: one subpackage per protocol, reached through a lazy registry (docs/DESIGN.md P5).

`DRIVERS` maps a config `kind` to ``"module:Class"``; `create_driver` imports the module only
when a bed's config uses that kind, so a bed without serial monitors never imports serial code.
Every registered class takes ``(settings, *, broker, timeouts, clock)`` and implements
`drivers.base.Driver`. A new device is one subpackage plus one line here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Final, Protocol, cast

if TYPE_CHECKING:
    from drivers.base import Driver
    from monitor.clock import Clock
    from monitor.settings import BrokerSettings, DriverSettings, TimeoutSettings

__all__ = ["DRIVERS", "UnknownDriverError", "create_driver"]

# Only kinds that have a driver are listed; the config schema may know more kinds than exist.
DRIVERS: Final[dict[str, str]] = {
    "mqtt": "drivers.mqtt.driver:MqttMonitorDriver",
    "masimo": "drivers.masimo.driver:MasimoDriver",
    "ge-s5": "drivers.ge_s5.driver:GeS5Driver",
    "intellivue": "drivers.intellivue.driver:IntelliVueDriver",
}


class UnknownDriverError(LookupError):
    """No driver is registered for a config `kind`."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        super().__init__(
            f"no driver is registered for kind {kind!r} (registered: {', '.join(sorted(DRIVERS))})"
        )


class _DriverClass(Protocol):
    """The constructor every registered driver class has."""

    def __call__(
        self,
        settings: DriverSettings,
        /,
        *,
        broker: BrokerSettings,
        timeouts: TimeoutSettings,
        clock: Clock,
    ) -> Driver: ...


def create_driver(
    settings: DriverSettings, *, broker: BrokerSettings, timeouts: TimeoutSettings, clock: Clock
) -> Driver:
    """A driver for one `[[drivers]]` entry, its module imported on first use.

    Raises:
        UnknownDriverError: `settings.kind` has no registered driver.
    """
    target = DRIVERS.get(settings.kind)
    if target is None:
        raise UnknownDriverError(settings.kind)
    module_name, _, class_name = target.partition(":")
    driver_class = cast("_DriverClass", getattr(importlib.import_module(module_name), class_name))
    return driver_class(settings, broker=broker, timeouts=timeouts, clock=clock)
