"""A device's spec: everything Vigil knows about one kind of monitor, in one place.

Each device folder has a ``spec.py`` with one `DeviceSpec`: its config `kind` and settings model,
how it is reached (serial line settings, TCP, MQTT), its quiet time, and where its driver, its
capture decoder, its sans-I/O link and its simulator live ("module:name", imported on use, so
reading the registry imports no driver). `drivers.registry` lists the specs; the config's
settings union, `vigil check-config`, `vigil decode`, `vigil simulate` and the contract suite
(tests/drivers/test_contract.py) are built from that list (docs/devices.md "Adding a device").

Pure: pydantic and dataclasses only (docs/DESIGN.md P5, P13).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import Field

from drivers.link import LineSettings
from kernel.settings import ID_PATTERN, ConfigModel, Number
from kernel.vocabulary import NIBP_PARAMS, Param

__all__ = [
    "MONITOR_PARAMS",
    "OXIMETER_PARAMS",
    "Contract",
    "DeviceSpec",
    "DriverSettingsBase",
    "SerialSettings",
    "TcpSettings",
    "Transport",
    "load",
]

Transport = Literal["serial", "tcp", "udp", "mqtt"]

# What a contract stream carries: a patient monitor's (ECG heart rate, oximetry, the cuff), or a
# pulse oximeter's alone.
MONITOR_PARAMS: Final = frozenset({Param.HR, Param.SPO2, Param.PR, *NIBP_PARAMS})
OXIMETER_PARAMS: Final = frozenset({Param.SPO2, Param.PR})


class DriverSettingsBase(ConfigModel):
    """What every `[[drivers]]` entry has; each device's model adds its `kind` literal."""

    kind: str
    device_id: Annotated[str, Field(pattern=ID_PATTERN)]

    def connection(self) -> str:
        """Where the device is connected, as an alarm message says it ("port /dev/ttyUSB0")."""
        raise NotImplementedError


class SerialSettings(DriverSettingsBase):
    """A device on a serial port (or a pyserial URL such as ``socket://host:port``)."""

    port: str = Field(description="serial device, e.g. /dev/ttyUSB0")
    # A monitor silent this long is DEVICE_DISCONNECTED (the spec's quiet time by default).
    quiet_s: Number | None = Field(default=None, gt=0)

    def connection(self) -> str:
        """Where the device is connected, as an alarm message says it."""
        return f"port {self.port}"


class TcpSettings(DriverSettingsBase):
    """A device on a TCP connection: Vigil listens for it, or connects to it."""

    mode: Literal["listen", "connect"] = Field(
        default="listen",
        description="listen: the monitor connects to host:port (an address of this box); "
        "connect: Vigil connects to the monitor (or its gateway) at host:port",
    )
    host: str
    port: int = Field(ge=1, le=65535)
    # A monitor silent this long is DEVICE_DISCONNECTED (the spec's quiet time by default).
    quiet_s: Number | None = Field(default=None, gt=0)

    def connection(self) -> str:
        """Where the device is connected, as an alarm message says it."""
        verb = "listening on" if self.mode == "listen" else "to"
        return f"TCP {verb} {self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Contract:
    """What the contract suite expects of a device driven by its simulator.

    `params`: the parameters the simulator's stream carries (and the driver must deliver
    intact). `names_cut_frames`: a frame cut short is counted as ``truncated`` (a framing that
    sees a new frame begin before the old one ended); where the halves just fail a check, only
    some drop reason is required. `variants`: settings (key, value pairs) the suite runs the
    device with too, beside its defaults (e.g. IntelliVue's single poll), each named by its
    values.
    """

    params: frozenset[Param]
    names_cut_frames: bool = True
    variants: tuple[tuple[tuple[str, str], ...], ...] = ()


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One kind of device (see the module docstring). References are ``"module:name"``."""

    kind: str
    summary: str
    settings: type[DriverSettingsBase]
    transport: Transport
    driver: str
    contract: Contract
    line: LineSettings | None = None
    quiet_s: float | None = None
    link: str | None = None  # a `LinkProtocol` class taking (device_id, stats)
    decode: str | None = None  # decode_capture(data, *, device_id) -> (samples, stats)
    simulator: str | None = None  # the simulator's `MonitorSide` class
    simulate_as: str | None = None  # the `vigil simulate` name when it is not `kind`

    @property
    def serial_line(self) -> LineSettings:
        """The line settings of a serial device.

        Raises:
            ValueError: the device is not on a serial line.
        """
        if self.line is None:
            raise ValueError(f"{self.kind} is reached over {self.transport}, not a serial line")
        return self.line

    @property
    def simulator_name(self) -> str:
        """The name `vigil simulate` knows this device by."""
        return self.simulate_as or self.kind


def device_spec(  # noqa: PLR0913 - the spec's own fields, by keyword
    settings: type[DriverSettingsBase],
    *,
    summary: str,
    driver: str,
    contract: Contract,
    transport: Transport | None = None,
    line: LineSettings | None = None,
    quiet_s: float | None = None,
    link: str | None = None,
    simulator: str | None = None,
    simulate_as: str | None = None,
) -> DeviceSpec:
    """The `DeviceSpec` of the device whose settings model is `settings`, by the folder layout.

    Its `kind` is the settings model's `kind` literal; its transport that of the settings' base
    (`SerialSettings`, `TcpSettings`) unless given; `driver` and `link` are class names in the
    device folder's `driver.py` and `codec.py`, and a device with a link has its capture decoder
    in `codec.py` too (docs/devices.md "Adding a device").
    """
    folder = settings.__module__.rpartition(".")[0]
    (kind,) = get_args(settings.model_fields["kind"].annotation)
    if transport is None:
        if issubclass(settings, SerialSettings):
            transport = "serial"
        elif issubclass(settings, TcpSettings):
            transport = "tcp"
        else:
            raise ValueError(f"{kind}: give the transport of {settings.__name__}")
    return DeviceSpec(
        kind=kind,
        summary=summary,
        settings=settings,
        transport=transport,
        driver=f"{folder}.driver:{driver}",
        contract=contract,
        line=line,
        quiet_s=quiet_s,
        link=None if link is None else f"{folder}.codec:{link}",
        decode=None if link is None else f"{folder}.codec:decode_capture",
        simulator=simulator,
        simulate_as=simulate_as,
    )


def load(ref: str) -> Any:
    """The object a ``"module:name"`` reference names, its module imported now."""
    module_name, sep, name = ref.partition(":")
    if not sep:
        raise ValueError(f"not a module:name reference: {ref!r}")
    return getattr(importlib.import_module(module_name), name)
