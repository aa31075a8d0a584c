"""Config models every layer shares: the primitives, the ward broker, the timeouts.

The bed config (`monitor.settings`) and each device's settings (`drivers/<device>/spec.py`) are
built from these, so a number that is `true`, an unknown key or a bad broker URL is refused the
same way everywhere (docs/ARCHITECTURE.md "Config file"). Pure pydantic: no I/O.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, Self
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from kernel.vocabulary import TOPIC_ROOT

__all__ = [
    "ID_PATTERN",
    "BrokerSettings",
    "ConfigModel",
    "Endpoint",
    "Int",
    "Number",
    "TimeoutSettings",
    "TopicPrefix",
    "broker_url",
]

# a ward, bed or device id: it is part of MQTT topics and metric labels
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


def _not_bool(value: Any) -> Any:
    # pydantic reads `true` as 1 for a number; in a config that is a typo, not a value.
    # (Environment overrides arrive as strings, so full strict mode is not an option.)
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {str(value).lower()}")  # noqa: TRY004
    return value


Number = Annotated[float, BeforeValidator(_not_bool)]
Int = Annotated[int, BeforeValidator(_not_bool)]


def _topic_prefix(v: str) -> str:
    if not v or any(c in v for c in "#+\0") or v.endswith("/"):
        raise ValueError("not a topic prefix (no wildcards, no trailing /)")
    return v


# The first topic levels a ward-level program reads under (`[hl7] prefix`, `[station] prefix`).
TopicPrefix = Annotated[str, AfterValidator(_topic_prefix)]


class ConfigModel(BaseModel):
    """Strict by default: an unknown key is an error, never silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def broker_url(v: str) -> str:
    """`v` if it is an mqtt:// or mqtts:// URL with a host and a usable port.

    The reasons never quote the URL: it may carry a password.
    """
    parts = urlsplit(v)
    if parts.scheme not in {"mqtt", "mqtts"}:
        raise ValueError("scheme must be mqtt:// or mqtts://")
    if not parts.hostname:
        raise ValueError("URL has no host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("bad port") from None
    if port == 0:
        raise ValueError("bad port: 0")
    return v


class Endpoint(NamedTuple):
    """One broker to try: where it listens (the TLS choice and credentials are the config's)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def _endpoint(url: str) -> Endpoint:
    parts = urlsplit(url)
    assert parts.hostname is not None  # checked by `broker_url`
    return Endpoint(parts.hostname, parts.port or (8883 if parts.scheme == "mqtts" else 1883))


class BrokerSettings(ConfigModel):
    """The ward MQTT broker, and the brokers to fail over to (docs/ARCHITECTURE.md "Failover")."""

    url: str = Field(default="mqtt://127.0.0.1:1883", description="mqtt:// or mqtts://")
    # The ward's redundant broker: a bridged pair (config/mosquitto/README.md "A redundant
    # pair"). Every connection attempt tries `url`, then these in order (drivers/mqtt/client.py
    # `connect`), so a client moves to the next broker when one is unreachable and goes back
    # to the first at its next reconnect, never while a later one serves it.
    failover: tuple[str, ...] = Field(
        default=(),
        description="further broker URLs, tried in order when `url` is unreachable; same scheme",
    )
    username: str | None = None
    password: SecretStr | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    prefix: str | None = Field(
        default=None, description=f"topic prefix; default {TOPIC_ROOT}/<ward>/<bed>"
    )
    client_id: str | None = None
    protocol: Literal["auto", "5", "3.1.1"] = Field(
        default="auto",
        description="MQTT version; 5 gives vitals a message expiry; auto: 5, else 3.1.1 "
        "when the broker refuses 5 (drivers/mqtt/client.py)",
    )
    # MQTT keep-alive: the broker sends our Last Will after 1.5x this without traffic
    # (MQTT 3.1.1 §3.1.2.10), so the ward sees a dead bed within ~30 s.
    keepalive_s: Int = Field(default=20, ge=5, le=600)
    vitals_interval_s: Number = Field(
        default=0.0,
        ge=0.0,
        description="at most one sample per parameter per this many seconds on …/vitals "
        "(0: every sample); cuff determinations are always published",
    )
    vitals_expiry_s: Int = Field(
        default=10,
        ge=1,
        description="MQTT 5 message expiry of vitals: stale vitals are never replayed",
    )
    # The bed and its MQTT monitors connect with stable client ids and a persistent session
    # that the broker keeps this long while the bed is away, so a QoS 1 command or cuff
    # determination published during a restart is delivered after it (issue 17, item 3).
    # 0: a clean session at every connect.
    session_expiry_s: Int = Field(default=3600, ge=0, le=7 * 86400)

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        return broker_url(v)

    @field_validator("failover")
    @classmethod
    def _check_failover(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for i, url in enumerate(v):
            try:
                broker_url(url)
            except ValueError as exc:
                raise ValueError(f"failover[{i}]: {exc}") from None
        return v

    @model_validator(mode="after")
    def _check_tls(self) -> Self:
        # TLS files with a plain mqtt:// URL would be ignored and the password sent in clear:
        # a config that says TLS must get TLS, or not start
        files = [k for k in ("ca_file", "cert_file", "key_file") if getattr(self, k) is not None]
        if files and not self.tls:
            raise ValueError(f"{', '.join(files)} given, but url is not mqtts://")
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file without cert_file")
        # one TLS context and one set of credentials serve every broker of the list
        scheme = urlsplit(self.url).scheme
        if any(urlsplit(u).scheme != scheme for u in self.failover):
            raise ValueError(f"every failover URL must be {scheme}:// like url")
        return self

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """`url`, then each `failover` broker: the order every connection attempt tries."""
        return tuple(_endpoint(u) for u in (self.url, *self.failover))

    @property
    def host(self) -> str:
        """Host part of `url`."""
        host = urlsplit(self.url).hostname
        assert host is not None  # checked by the validator
        return host

    @property
    def port(self) -> int:
        """Port of `url`, 1883 (8883 for mqtts) when absent."""
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def tls(self) -> bool:
        """Whether the URL asks for TLS."""
        return urlsplit(self.url).scheme == "mqtts"


class TimeoutSettings(ConfigModel):
    """Every wait has a timeout, and every timeout a reason."""

    broker_connect_s: Number = Field(
        default=10.0, gt=0, description="TCP + CONNACK; a LAN broker answers in milliseconds"
    )
    publish_s: Number = Field(
        default=10.0, gt=0, description="PUBACK for a QoS 1 publish before the link counts as down"
    )
    shutdown_s: Number = Field(
        default=5.0, gt=0, description="time to publish `offline` and close on SIGTERM"
    )
    serial_write_s: Number = Field(
        default=2.0,
        gt=0,
        description="opening a serial port, and a write held by RTS/CTS flow control; "
        "longer means the device is gone",
    )
    ward_link_down_s: Number = Field(
        default=10.0,
        gt=0,
        description="broker unreachable this long (real seconds): WARD_LINK_DOWN",
    )
    backoff_max_s: Number = Field(
        default=30.0, gt=0, description="cap of the jittered reconnect backoff"
    )
