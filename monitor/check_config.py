"""`vigil check-config FILE`: every problem with file, key and reason; exit 1 on any."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alarms.policy import load_policy
from drivers import DRIVERS
from monitor.configfile import ConfigError, ConfigProblem
from monitor.settings import Settings, load_settings

__all__ = ["check_config", "check_config_main"]


def check_config(path: Path) -> tuple[Settings | None, list[ConfigProblem]]:
    """Validate a bed config and the policy it names; return the settings and every problem."""
    try:
        settings = load_settings(path)
    except ConfigError as exc:
        return None, exc.problems
    problems: list[ConfigProblem] = []
    for i, d in enumerate(settings.drivers):
        if d.kind not in DRIVERS:
            problems.append(
                ConfigProblem(
                    file=str(path),
                    key=f"drivers[{i}].kind",
                    reason=f"no driver for {d.kind!r} is installed (available: "
                    f"{', '.join(sorted(DRIVERS))})",
                )
            )
    try:
        load_policy(settings.alarms.policy)
    except ConfigError as exc:
        problems += exc.problems
    return settings, problems


def check_config_main(args: argparse.Namespace) -> int:
    """Print the verdict; exit status 0 when the config can be used, else 1."""
    settings, problems = check_config(args.file)
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        print(f"{args.file}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    assert settings is not None
    print(
        f"{args.file}: ok (bed {settings.bed.ward}/{settings.bed.bed}, "
        f"{len(settings.drivers)} driver(s), policy {settings.alarms.policy})"
    )
    return 0
