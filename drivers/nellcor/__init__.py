"""Nellcor N-595 / N-560 ASCII data port output: codec, driver, spec (docs/devices.md §2.6)."""
