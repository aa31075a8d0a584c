"""The bed config: TOML at the edge, typed models inside (docs/ARCHITECTURE.md "Config file").

Load with `load_settings(path)`. Environment variables `VIGIL_<SECTION>__<KEY>` override the file
(e.g. `VIGIL_BROKER__URL`, `VIGIL_BROKER__PASSWORD`), so secrets need not live in the file; each
further `__` reaches one table deeper, and `VIGIL_DRIVERS__<DEVICE_ID>__<KEY>` the `[[drivers]]`
entry of that device (`VIGIL_DRIVERS__OX__PORT=/dev/ttyUSB1`). Every problem is reported with
the file, the dotted key and the reason (`ConfigError`).

The overrides are read here rather than with pydantic-settings: its sources cannot reach one
entry of a list (`[[drivers]]`) by a key of the entry, and they read the process environment
only, where `load_settings` takes the environment as an argument (tests, `vigil check-config`).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
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
# the tables an environment variable may reach: every section of the file but the drivers,
# which are reached by device id (`_env_overrides`)
_SECTIONS = frozenset(set(Settings.model_fields) - {"drivers"})


def _env_overrides(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The environment's overrides: (sections, drivers by device id).

    `VIGIL_BROKER__URL=...` gives {"broker": {"url": ...}}; each further `__` goes one table
    deeper (`VIGIL_ALARMS__X__Y`). `VIGIL_DRIVERS__<DEVICE_ID>__<KEY>` reaches the `[[drivers]]`
    entry of that device (ids compared without case, as variable names are written in capitals).
    Names are read without case; anything else under `VIGIL_` is not an override.
    """
    sections: dict[str, Any] = {}
    drivers: dict[str, dict[str, Any]] = {}
    for name, value in environ.items():
        if not name.startswith(_ENV_PREFIX) or "__" not in name:
            continue
        path = name[len(_ENV_PREFIX) :].lower().split("__")
        if not all(path):
            continue
        if path[0] == "drivers" and len(path) >= 3:
            node = drivers.setdefault(path[1], {})
            path = path[2:]
        elif path[0] in _SECTIONS:
            node = sections
        else:
            continue
        for key in path[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                break  # a shorter variable named this key already: the value wins
            node = child
        else:
            node[path[-1]] = value
    return sections, drivers


def _merge(into: dict[str, Any], values: Mapping[str, Any]) -> None:
    for key, value in values.items():
        node = into.get(key)
        if isinstance(value, dict) and isinstance(node, dict):
            _merge(node, value)
        else:
            into[key] = value


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
    sections, drivers = _env_overrides(os.environ if environ is None else environ)
    _merge(data, sections)
    entries = data.get("drivers")
    for device, values in drivers.items():
        found = [
            d
            for d in (entries if isinstance(entries, list) else [])
            if isinstance(d, dict) and str(d.get("device_id", "")).lower() == device
        ]
        if not found:
            raise ConfigError(
                [
                    ConfigProblem(
                        file=file,
                        key="drivers",
                        reason=f"{_ENV_PREFIX}DRIVERS__{device.upper()}__…: "
                        f"no [[drivers]] entry has device_id {device!r}",
                    )
                ]
            )
        _merge(found[0], values)
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
