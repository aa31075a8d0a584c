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
from typing import Annotated, Any

from pydantic import Field, field_validator

from drivers.registry import KINDS, DriverSettings
from kernel.configfile import ConfigError, ConfigProblem, read_toml, validate
from kernel.paths import default_policy_path
from kernel.settings import (
    ID_PATTERN,
    BrokerSettings,
    ConfigModel,
    Number,
    TimeoutSettings,
)
from monitor.authority import CommandSettings
from monitor.wire import bed_prefix

__all__ = [
    "AlarmsSettings",
    "BedSettings",
    "BrokerSettings",
    "ClockSettings",
    "ConfigError",
    "ConfigProblem",
    "DriverSettings",
    "JournalSettings",
    "MetricsSettings",
    "Settings",
    "TimeoutSettings",
    "cli_broker",
    "load_settings",
]


class BedSettings(ConfigModel):
    """Which bed this daemon watches; these names form the MQTT prefix."""

    ward: Annotated[str, Field(pattern=ID_PATTERN, description="ward id, used in topics")]
    bed: Annotated[str, Field(pattern=ID_PATTERN, description="bed id, used in topics")]


class JournalSettings(ConfigModel):
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


class AlarmsSettings(ConfigModel):
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


class MetricsSettings(ConfigModel):
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


class ClockSettings(ConfigModel):
    """Simulated time, for demos and tests only; a bedside daemon leaves this section out.

    With `speed` other than 1, time runs `speed` times faster than the wall clock from the
    wall-clock instant `anchor` (default: start-up), shared with the simulator's `--anchor`.
    """

    speed: Number = Field(default=1.0, gt=0.0)
    anchor: float | None = None


class Settings(ConfigModel):
    """The whole bed configuration."""

    bed: BedSettings
    broker: BrokerSettings = BrokerSettings()
    journal: JournalSettings = JournalSettings()
    alarms: AlarmsSettings = AlarmsSettings()
    metrics: MetricsSettings = MetricsSettings()
    timeouts: TimeoutSettings = TimeoutSettings()
    clock: ClockSettings = ClockSettings()
    commands: CommandSettings = CommandSettings()
    drivers: list[DriverSettings] = Field(default_factory=list)

    @property
    def prefix(self) -> str:
        """The bed's MQTT topic prefix."""
        return self.broker.prefix or bed_prefix(self.bed.ward, self.bed.bed)

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


def parse_settings(data: dict[str, Any], *, file: str) -> Settings:
    """Validate already-parsed TOML data; raise `ConfigError` with every problem."""
    settings: Settings = validate(Settings, data, file=file, tags=KINDS)
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
