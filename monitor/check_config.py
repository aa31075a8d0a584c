"""`vigil check-config FILE`: every problem with file, key and reason; exit 1 on any.

A file with an `[hl7]` section and no `[bed]` is a `vigil hl7` gateway config, checked by
`monitor.hl7.settings.check_gateway_main`.

Warnings (a serial port that is not there now) go to stderr too but do not fail the check: a
USB adapter may be plugged in after the config is written, and the driver keeps trying to open
its port until it appears.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from drivers.registry import spec_for
from drivers.spec import SerialSettings, load
from kernel.configfile import ConfigError, ConfigProblem, read_toml
from monitor.session import load_bed_policy
from monitor.settings import Settings, load_settings

__all__ = ["check_config", "check_config_main", "config_warnings"]


def check_config(path: Path) -> tuple[Settings | None, list[ConfigProblem]]:
    """Validate a bed config and the policy it names; return the settings and every problem."""
    try:
        settings = load_settings(path)
    except ConfigError as exc:
        return None, exc.problems
    problems: list[ConfigProblem] = []
    for i, d in enumerate(settings.drivers):
        # the config only accepts registered kinds; what can still fail is the driver's own
        # import (a dependency missing from this installation), which the daemon would only
        # meet when it starts the driver
        try:
            load(spec_for(d.kind).driver)
        except ImportError as exc:
            problems.append(
                ConfigProblem(
                    file=str(path),
                    key=f"drivers[{i}].kind",
                    reason=f"the {d.kind!r} driver cannot be loaded here: {exc}",
                )
            )
    try:
        load_bed_policy(settings.alarms.policy)
    except ConfigError as exc:
        problems += exc.problems
    return settings, problems


def config_warnings(path: Path, settings: Settings) -> list[ConfigProblem]:
    """What is valid but probably not what was meant: serial ports that do not exist now."""
    warnings: list[ConfigProblem] = []
    for i, d in enumerate(settings.drivers):
        if not isinstance(d, SerialSettings):
            continue
        port = d.port
        # a pyserial URL (socket://host:port, rfc2217://...) names no file to look for
        if "://" not in port and not Path(port).exists():
            warnings.append(
                ConfigProblem(
                    file=str(path),
                    key=f"drivers[{i}].port",
                    reason=f"warning: {port} does not exist now; the driver will keep "
                    f"trying to open it ({d.device_id} is DEVICE_DISCONNECTED until then)",
                )
            )
    return warnings


def _is_gateway_file(path: Path) -> bool:
    """A `vigil hl7` file: an `[hl7]` section and no `[bed]` (unreadable: not decided here)."""
    try:
        data = read_toml(path)
    except ConfigError:
        return False
    return "hl7" in data and "bed" not in data


def check_config_main(args: argparse.Namespace) -> int:
    """Print the verdict; exit status 0 when the config can be used, else 1."""
    if _is_gateway_file(args.file):
        from monitor.hl7.settings import check_gateway_main  # noqa: PLC0415 - only for [hl7]

        return check_gateway_main(args.file)
    settings, problems = check_config(args.file)
    # warnings need valid settings; an invalid file gets its problems only
    warnings = [] if settings is None else config_warnings(args.file, settings)
    for p in [*problems, *warnings]:
        print(p, file=sys.stderr)
    if problems:
        print(f"{args.file}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    assert settings is not None
    print(
        f"{args.file}: ok (bed {settings.bed.ward}/{settings.bed.bed}, "
        f"{len(settings.drivers)} driver(s), policy {settings.alarms.policy})"
        + (f", {len(warnings)} warning(s)" if warnings else "")
    )
    return 0
