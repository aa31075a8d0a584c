"""drivers.registry: one spec per device, and everything that lists devices built from it."""

from __future__ import annotations

import subprocess
import sys
import typing

import pytest
from pydantic import TypeAdapter, ValidationError

from drivers.base import Driver
from drivers.decode import DECODERS
from drivers.ge_s5.driver import GeS5Driver
from drivers.intellivue.driver import IntelliVueDriver
from drivers.masimo.driver import MasimoDriver
from drivers.mqtt.driver import MqttMonitorDriver
from drivers.mqtt.spec import MqttSettings
from drivers.registry import KINDS, SPECS, DriverSettings, UnknownDriverError, create_driver
from drivers.serialport import SerialDriver
from drivers.spec import SerialSettings, load
from kernel.clock import ManualClock
from kernel.settings import BrokerSettings, TimeoutSettings
from simulators.cli import DEVICES

BROKER = BrokerSettings(url="mqtt://127.0.0.1:1883")
TIMEOUTS = TimeoutSettings()


def test_mqtt_kind_creates_the_mqtt_driver() -> None:
    settings = MqttSettings(kind="mqtt", device_id="mon1", topic="monitors/mon1/samples")
    driver: Driver = create_driver(settings, broker=BROKER, timeouts=TIMEOUTS, clock=ManualClock())
    assert isinstance(driver, MqttMonitorDriver)
    assert driver.device_id == "mon1"


def test_an_unknown_kind_is_a_clear_error() -> None:
    mqtt = MqttSettings(kind="mqtt", device_id="x", topic="t")
    settings = mqtt.model_copy(update={"kind": "pager"})  # no config model allows this kind
    with pytest.raises(UnknownDriverError, match=r"no driver is registered for kind 'pager'") as e:
        create_driver(settings, broker=BROKER, timeouts=TIMEOUTS, clock=ManualClock())
    assert e.value.kind == "pager"


def test_kinds_are_unique_and_each_spec_names_its_own_settings_model() -> None:
    assert len(KINDS) == len(SPECS)
    for spec in SPECS:
        # the model's `kind` literal is the spec's kind, so the union picks this model
        assert typing.get_args(spec.settings.model_fields["kind"].annotation) == (spec.kind,)


def test_the_config_union_accepts_every_kind_and_refuses_others() -> None:
    adapter: TypeAdapter[object] = TypeAdapter(DriverSettings)
    # the keys each transport needs (docs/ARCHITECTURE.md "Config file")
    needs: dict[str, dict[str, object]] = {
        "serial": {"port": "/dev/ttyUSB0"},
        "tcp": {"host": "192.0.2.10", "port": 2575},
        "udp": {"host": "192.0.2.11"},
        "mqtt": {"topic": "monitors/d/samples"},
    }
    for spec in SPECS:
        entry = {"kind": spec.kind, "device_id": "d", **needs[spec.transport]}
        assert type(adapter.validate_python(entry)) is spec.settings
    with pytest.raises(ValidationError, match="does not match any of the expected tags"):
        adapter.validate_python({"kind": "pager", "device_id": "d"})


@pytest.mark.parametrize(
    ("kind", "cls"),
    [("masimo", MasimoDriver), ("ge-s5", GeS5Driver), ("intellivue", IntelliVueDriver)],
)
def test_serial_kinds_create_their_driver(kind: str, cls: type[SerialDriver]) -> None:
    settings = TypeAdapter(DriverSettings).validate_python(
        {"kind": kind, "device_id": "mon", "port": "/dev/ttyUSB0"}
    )
    assert isinstance(settings, SerialSettings)
    driver = create_driver(settings, broker=BROKER, timeouts=TIMEOUTS, clock=ManualClock())
    assert type(driver) is cls
    assert (driver.device_id, driver.port) == ("mon", "/dev/ttyUSB0")


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.kind)
def test_every_reference_of_a_spec_exists(spec: typing.Any) -> None:
    for ref in (spec.driver, spec.link, spec.decode, spec.simulator):
        if ref is not None:
            assert callable(load(ref)), ref
    if spec.transport == "serial":
        assert spec.line is not None
        assert spec.quiet_s is not None
        assert spec.link is not None
        assert spec.decode is not None


def test_decode_and_simulate_list_the_registered_devices() -> None:
    assert set(DECODERS) == {s.kind for s in SPECS if s.decode is not None}
    assert set(DECODERS) >= {"masimo", "ge-s5", "intellivue"}
    assert set(DEVICES) == {s.simulator_name for s in SPECS}
    assert DEVICES["mqtt-monitor"].transport == "mqtt"


def test_importing_the_registry_imports_no_driver() -> None:
    code = (
        "import sys, drivers.registry; "
        "print(sorted(m for m in sys.modules if m.endswith('.driver') or m.startswith('serial')"
        " or m.startswith('aiomqtt')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
