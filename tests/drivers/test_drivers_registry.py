"""drivers: the lazy registry of driver kinds."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from drivers import DRIVERS, UnknownDriverError, create_driver
from drivers.base import Driver
from drivers.ge_s5.driver import GeS5Driver as GeS5SerialDriver
from drivers.intellivue.driver import IntelliVueDriver as IntelliVueSerialDriver
from drivers.masimo.driver import MasimoDriver as MasimoSerialDriver
from drivers.mqtt.driver import MqttMonitorDriver
from drivers.serialport import SerialDriver
from monitor.clock import ManualClock
from monitor.settings import (
    _DRIVER_KINDS,
    BrokerSettings,
    GeS5Driver,
    IntelliVueDriver,
    MasimoDriver,
    MqttDriver,
    TimeoutSettings,
)

BROKER = BrokerSettings(url="mqtt://127.0.0.1:1883")
TIMEOUTS = TimeoutSettings()


def test_mqtt_kind_creates_the_mqtt_driver() -> None:
    settings = MqttDriver(kind="mqtt", device_id="mon1", topic="monitors/mon1/samples")
    driver: Driver = create_driver(settings, broker=BROKER, timeouts=TIMEOUTS, clock=ManualClock())
    assert isinstance(driver, MqttMonitorDriver)
    assert driver.device_id == "mon1"


def test_an_unknown_kind_is_a_clear_error() -> None:
    mqtt = MqttDriver(kind="mqtt", device_id="x", topic="t")
    settings = mqtt.model_copy(update={"kind": "pager"})  # no config model allows this kind
    with pytest.raises(UnknownDriverError, match=r"no driver is registered for kind 'pager'") as e:
        create_driver(settings, broker=BROKER, timeouts=TIMEOUTS, clock=ManualClock())
    assert e.value.kind == "pager"


def test_every_kind_the_config_accepts_has_a_driver() -> None:
    assert set(DRIVERS) == set(_DRIVER_KINDS)


@pytest.mark.parametrize(
    ("settings", "cls"),
    [
        (MasimoDriver(kind="masimo", device_id="spo2", port="/dev/ttyUSB0"), MasimoSerialDriver),
        (GeS5Driver(kind="ge-s5", device_id="s5", port="/dev/ttyUSB2"), GeS5SerialDriver),
        (
            IntelliVueDriver(kind="intellivue", device_id="mp70", port="/dev/ttyUSB1"),
            IntelliVueSerialDriver,
        ),
    ],
)
def test_serial_kinds_create_their_driver(
    settings: MasimoDriver | IntelliVueDriver | GeS5Driver, cls: type[SerialDriver]
) -> None:
    driver = create_driver(settings, broker=BROKER, timeouts=TIMEOUTS, clock=ManualClock())
    assert type(driver) is cls
    assert (driver.device_id, driver.port) == (settings.device_id, settings.port)


@pytest.mark.parametrize("kind", sorted(DRIVERS))
def test_every_registered_target_exists(kind: str) -> None:
    module_name, sep, class_name = DRIVERS[kind].partition(":")
    assert sep == ":"
    assert callable(getattr(importlib.import_module(module_name), class_name))


def test_importing_the_registry_imports_no_driver() -> None:
    code = "import sys, drivers; print(any(m.startswith('drivers.mqtt') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
