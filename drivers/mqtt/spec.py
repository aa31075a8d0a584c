"""The MQTT monitor's spec: a monitor that publishes its numerics to an MQTT broker."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from drivers.spec import MONITOR_PARAMS, Contract, DriverSettingsBase, device_spec
from kernel.settings import broker_url

__all__ = ["SPEC", "MqttSettings"]


class MqttSettings(DriverSettingsBase):
    """A monitor that publishes its samples over MQTT (`kind = "mqtt"`)."""

    kind: Literal["mqtt"]
    topic: str
    format: Literal["vigil", "vscapture"] = "vigil"
    # Messages waiting in the client for the bed: beyond this the oldest are dropped and
    # counted (`overload`), so a flooding monitor cannot build a backlog that delays every
    # alarm behind it (issue 17, item 5).
    max_queued: int = Field(default=1000, ge=10, le=1_000_000)
    broker_url: str | None = Field(
        default=None, description="another broker than [broker]; default the ward broker"
    )

    @field_validator("broker_url")
    @classmethod
    def _check_broker_url(cls, v: str | None) -> str | None:
        return None if v is None else broker_url(v)

    @field_validator("topic")
    @classmethod
    def _check_topic(cls, v: str) -> str:
        if not v or "#" in v[:-1] or "\0" in v:
            raise ValueError("not a valid MQTT topic filter")
        return v

    def connection(self) -> str:
        """Where the device is connected, as an alarm message says it."""
        return "MQTT"


SPEC = device_spec(
    MqttSettings,
    summary="a monitor publishing Vigil Sample JSON over MQTT",
    transport="mqtt",
    driver="MqttMonitorDriver",
    # the simulator publishes every scenario sample, cuff determinations included
    contract=Contract(MONITOR_PARAMS),
    simulate_as="mqtt-monitor",
)
