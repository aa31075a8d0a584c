"""Ivy Biomedical 450C "ANSAR-B" serial output: codec, driver and spec (docs/devices.md §2.5)."""
