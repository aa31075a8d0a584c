"""The device registry: one line per kind of device, each a spec in the device's folder.

Everything that lists devices is built from `SPECS`: the config's settings union
(`DriverSettings`, used by `monitor.settings`), `create_driver` (the daemon), `vigil
check-config`, `vigil decode`, `vigil simulate` and the contract suite. A new device is one
folder under `drivers/` (codec, driver, spec) plus one line here (docs/devices.md "Adding a
device"). Importing this module imports the specs only: pydantic models and strings, no driver,
no pyserial, no MQTT client (docs/DESIGN.md P5).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Final, Protocol, Union, cast

from pydantic import Field

from drivers.ge_s5.spec import SPEC as GE_S5
from drivers.intellivue.spec import SPEC as INTELLIVUE
from drivers.intellivue_lan.spec import SPEC as INTELLIVUE_LAN
from drivers.ivy_450c.spec import SPEC as IVY_450C
from drivers.masimo.spec import SPEC as MASIMO
from drivers.mindray_hl7.spec import SPEC as MINDRAY_HL7
from drivers.mqtt.spec import SPEC as MQTT
from drivers.nellcor.spec import SPEC as NELLCOR
from drivers.spec import DeviceSpec, DriverSettingsBase, load

if TYPE_CHECKING:
    from drivers.base import Driver
    from kernel.clock import Clock
    from kernel.settings import BrokerSettings, TimeoutSettings

__all__ = [
    "KINDS",
    "SPECS",
    "DriverSettings",
    "UnknownDriverError",
    "create_driver",
    "spec_for",
]

SPECS: Final[tuple[DeviceSpec, ...]] = (
    MQTT,
    MASIMO,
    GE_S5,
    INTELLIVUE,
    IVY_450C,
    NELLCOR,
    MINDRAY_HL7,
    INTELLIVUE_LAN,
)

_BY_KIND: Final[dict[str, DeviceSpec]] = {s.kind: s for s in SPECS}
KINDS: Final[frozenset[str]] = frozenset(_BY_KIND)

if TYPE_CHECKING:
    DriverSettings = DriverSettingsBase
else:
    # One `[[drivers]]` entry: pydantic picks the device's model by `kind`.
    DriverSettings = Annotated[
        Union[tuple(s.settings for s in SPECS)],  # noqa: UP007 - a union built from the specs
        Field(discriminator="kind"),
    ]


class UnknownDriverError(LookupError):
    """No driver is registered for a config `kind`."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        super().__init__(
            f"no driver is registered for kind {kind!r} (registered: {', '.join(sorted(KINDS))})"
        )


def spec_for(kind: str) -> DeviceSpec:
    """The spec of `kind`.

    Raises:
        UnknownDriverError: no device of that kind is registered.
    """
    spec = _BY_KIND.get(kind)
    if spec is None:
        raise UnknownDriverError(kind)
    return spec


class _DriverClass(Protocol):
    """The constructor every registered driver class has."""

    def __call__(
        self,
        settings: DriverSettingsBase,
        /,
        *,
        broker: BrokerSettings,
        timeouts: TimeoutSettings,
        clock: Clock,
    ) -> Driver: ...


def create_driver(
    settings: DriverSettingsBase,
    *,
    broker: BrokerSettings,
    timeouts: TimeoutSettings,
    clock: Clock,
) -> Driver:
    """A driver for one `[[drivers]]` entry, its module imported on first use.

    Raises:
        UnknownDriverError: `settings.kind` has no registered driver.
    """
    driver_class = cast("_DriverClass", load(spec_for(settings.kind).driver))
    return driver_class(settings, broker=broker, timeouts=timeouts, clock=clock)
