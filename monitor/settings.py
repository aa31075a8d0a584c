"""The bed config: TOML at the edge, typed models inside (docs/ARCHITECTURE.md "Config file").

Load with `load_settings(path)`. Environment variables `VIGIL_<SECTION>__<KEY>` override the file
(e.g. `VIGIL_BROKER__URL`, `VIGIL_BROKER__PASSWORD`), so secrets need not live in the file. Every
problem is reported with the file, the dotted key and the reason (`ConfigError`).
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from monitor.configfile import ConfigError, ConfigProblem, read_toml, validate
from monitor.paths import default_policy_path

__all__ = [
    "AlarmsSettings",
    "BedSettings",
    "BrokerSettings",
    "ClockSettings",
    "ConfigError",
    "ConfigProblem",
    "DriverSettings",
    "GeS5Driver",
    "IntelliVueDriver",
    "JournalSettings",
    "MasimoDriver",
    "MetricsSettings",
    "MqttDriver",
    "Settings",
    "TimeoutSettings",
    "cli_broker",
    "load_settings",
]

_ID = r"^[A-Za-z0-9_-]{1,64}$"


def _not_bool(value: Any) -> Any:
    # pydantic reads `true` as 1 for a number; in a config that is a typo, not a value.
    # (Environment overrides arrive as strings, so full strict mode is not an option.)
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {str(value).lower()}")  # noqa: TRY004
    return value


Number = Annotated[float, BeforeValidator(_not_bool)]
Int = Annotated[int, BeforeValidator(_not_bool)]


class _Model(BaseModel):
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


class BedSettings(_Model):
    """Which bed this daemon watches; these names form the MQTT prefix."""

    ward: Annotated[str, Field(pattern=_ID, description="ward id, used in topics")]
    bed: Annotated[str, Field(pattern=_ID, description="bed id, used in topics")]


class BrokerSettings(_Model):
    """The ward MQTT broker."""

    url: str = Field(default="mqtt://127.0.0.1:1883", description="mqtt:// or mqtts://")
    username: str | None = None
    password: SecretStr | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    prefix: str | None = Field(default=None, description="topic prefix; default vigil/<ward>/<bed>")
    client_id: str | None = None
    protocol: Literal["auto", "5", "3.1.1"] = Field(
        default="auto",
        description="MQTT version; 5 gives vitals a message expiry; auto: 5, else 3.1.1 "
        "when the broker refuses 5 (monitor/mqtt_client.py)",
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

    @model_validator(mode="after")
    def _check_tls(self) -> Self:
        # TLS files with a plain mqtt:// URL would be ignored and the password sent in clear:
        # a config that says TLS must get TLS, or not start
        files = [k for k in ("ca_file", "cert_file", "key_file") if getattr(self, k) is not None]
        if files and not self.tls:
            raise ValueError(f"{', '.join(files)} given, but url is not mqtts://")
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file without cert_file")
        return self

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


class JournalSettings(_Model):
    """The durable journal and outbox (SQLite)."""

    path: Path = Path("/var/lib/vigil/journal.sqlite")
    keep_days: Number = Field(
        default=30.0,
        gt=0,
        description="days of samples kept for export and reports (a course is two weeks)",
    )
    min_free_mb: Number = Field(
        default=200.0,
        ge=0,
        description="free space on the journal's file system below this: JOURNAL_SPACE_LOW",
    )


class AlarmsSettings(_Model):
    """The alarm policy file (docs/ALARMS.md as data)."""

    policy: Path = Field(default_factory=default_policy_path)
    # Live ticks wait this long (real seconds; scaled by a simulated clock's speed) past each
    # whole second for samples stamped just before it, so a sample in flight is not overtaken
    # by the tick (docs/ALARMS.md "Precise reading" 1).
    tick_grace_s: Number = Field(default=0.2, ge=0.0, le=1.0)
    # A sample whose own time is further than this ahead of, or behind, the bed's clock (bed
    # seconds) is re-stamped with the bed's time and DEVICE_CLOCK_OFF raised
    # (monitor/timekeeper.py). Behind stays under the 30 s of the no-data alarms, so a late
    # sample can never clear one only for the next tick to raise it again.
    sample_max_ahead_s: Number = Field(default=5.0, ge=0.0, le=3600.0)
    sample_max_behind_s: Number = Field(default=25.0, ge=0.0, lt=30.0)


class MetricsSettings(_Model):
    """The Prometheus endpoint."""

    listen: str = "127.0.0.1:9464"
    enabled: bool = True

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("expected HOST:PORT")
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            if not re.fullmatch(r"[A-Za-z0-9.-]+", host):
                raise ValueError("bad host") from None
        return v


class TimeoutSettings(_Model):
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


class ClockSettings(_Model):
    """Simulated time, for demos and tests only; a bedside daemon leaves this section out.

    With `speed` other than 1, time runs `speed` times faster than the wall clock from the
    wall-clock instant `anchor` (default: start-up), shared with the simulator's `--anchor`.
    """

    speed: Number = Field(default=1.0, gt=0.0)
    anchor: float | None = None


class _DriverBase(_Model):
    device_id: Annotated[str, Field(pattern=_ID)]


class MqttDriver(_DriverBase):
    """A monitor that publishes its samples over MQTT."""

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


class _SerialDriver(_DriverBase):
    port: str = Field(description="serial device, e.g. /dev/ttyUSB0")
    # A monitor silent this long is DEVICE_DISCONNECTED (protocol-specific defaults).
    quiet_s: Number | None = Field(default=None, gt=0)


class MasimoDriver(_SerialDriver):
    """Masimo ASCII-1 serial output (9600 8N1)."""

    kind: Literal["masimo"]


class IntelliVueDriver(_SerialDriver):
    """Philips IntelliVue Data Export over MIB/RS232 (115200 8N1)."""

    kind: Literal["intellivue"]


class GeS5Driver(_SerialDriver):
    """GE Datex-Ohmeda S/5 computer interface (19200 8E1, RTS/CTS)."""

    kind: Literal["ge-s5"]


DriverSettings = Annotated[
    MqttDriver | MasimoDriver | IntelliVueDriver | GeS5Driver, Field(discriminator="kind")
]


class Settings(_Model):
    """The whole bed configuration."""

    bed: BedSettings
    broker: BrokerSettings = BrokerSettings()
    journal: JournalSettings = JournalSettings()
    alarms: AlarmsSettings = AlarmsSettings()
    metrics: MetricsSettings = MetricsSettings()
    timeouts: TimeoutSettings = TimeoutSettings()
    clock: ClockSettings = ClockSettings()
    drivers: list[DriverSettings] = Field(default_factory=list)

    @property
    def prefix(self) -> str:
        """The bed's MQTT topic prefix."""
        return self.broker.prefix or f"vigil/{self.bed.ward}/{self.bed.bed}"

    @property
    def client_id(self) -> str:
        """The ward link's MQTT client id, stable across restarts (its MQTT monitors add theirs)."""
        return self.broker.client_id or f"vigil-{self.bed.ward}-{self.bed.bed}"


_ENV_PREFIX = "VIGIL_"
_SECTIONS = frozenset({"bed", "broker", "journal", "alarms", "metrics", "timeouts", "clock"})


def _env_overrides(environ: dict[str, str]) -> dict[str, dict[str, str]]:
    """`VIGIL_BROKER__URL=...` → {"broker": {"url": ...}} (one nesting level, like the file)."""
    out: dict[str, dict[str, str]] = {}
    for name, value in environ.items():
        if not name.startswith(_ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(_ENV_PREFIX) :].lower().partition("__")
        if section in _SECTIONS and key:
            out.setdefault(section, {})[key] = value
    return out


_DRIVER_KINDS = frozenset({"mqtt", "masimo", "intellivue", "ge-s5"})


def parse_settings(data: dict[str, Any], *, file: str) -> Settings:
    """Validate already-parsed TOML data; raise `ConfigError` with every problem."""
    settings: Settings = validate(Settings, data, file=file, tags=_DRIVER_KINDS)
    seen: set[str] = set()
    problems = []
    for i, d in enumerate(settings.drivers):
        if d.device_id in seen:
            problems.append(
                ConfigProblem(
                    file=file,
                    key=f"drivers[{i}].device_id",
                    reason=f"device_id {d.device_id!r} is used twice",
                )
            )
        seen.add(d.device_id)
    if problems:
        raise ConfigError(problems)
    return settings


def cli_broker(args: Any, url: str, environ: dict[str, str] | None = None) -> BrokerSettings:
    """The broker of a command-line tool (`vigil watch`, `vigil cmd`).

    `url` and the ``--username``, ``--ca-file``, ``--cert-file``, ``--key-file`` and
    ``--mqtt-version`` options of `args`, with the password from ``VIGIL_BROKER__PASSWORD``
    (never an argument: the process list shows those).

    Raises:
        pydantic.ValidationError: a bad URL, or TLS files with a plain mqtt:// URL.
    """
    env = os.environ if environ is None else environ
    fields: dict[str, Any] = {"url": url}
    for key in ("username", "ca_file", "cert_file", "key_file"):
        if getattr(args, key, None) is not None:
            fields[key] = getattr(args, key)
    if getattr(args, "mqtt_version", None) is not None:
        fields["protocol"] = args.mqtt_version
    if env.get("VIGIL_BROKER__PASSWORD"):
        fields["password"] = env["VIGIL_BROKER__PASSWORD"]
    return BrokerSettings.model_validate(fields)


def load_settings(path: Path, environ: dict[str, str] | None = None) -> Settings:
    """Read, merge environment overrides into, and validate the config at `path`.

    Relative paths inside the file (journal, policy) are resolved against the file's folder.
    """
    file = str(path)
    data = read_toml(path)
    for section, values in _env_overrides(dict(os.environ if environ is None else environ)).items():
        node = data.setdefault(section, {})
        if isinstance(node, dict):
            node.update(values)
    base = path.parent
    for section, key in (("journal", "path"), ("alarms", "policy")):
        node = data.get(section)
        if isinstance(node, dict) and isinstance(node.get(key), str):
            p = Path(node[key])
            if not p.is_absolute():
                node[key] = str(_resolve_relative(base, p))
    return parse_settings(data, file=file)


def _resolve_relative(base: Path, p: Path) -> Path:
    """A relative path in a config is relative to the config file's folder, never the CWD.

    A stray file in whatever directory the daemon was started from must never become the
    alarm policy or the journal.
    """
    return base / p
