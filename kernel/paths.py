"""Where shipped data lives: `config/` in a source checkout, or its copy inside a wheel."""

from __future__ import annotations

from pathlib import Path

__all__ = ["default_policy_path", "shipped_config_dir"]


def shipped_config_dir() -> Path:
    """The folder holding the shipped `alarms.toml` and `bed.example.toml`."""
    packaged = Path(__file__).resolve().parent / "shipped_config"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[1] / "config"


def default_policy_path() -> Path:
    """The default alarm policy (docs/ALARMS.md as data)."""
    return shipped_config_dir() / "alarms.toml"
