"""Mindray monitors' HL7 v2.3.1 output over MLLP/TCP: codec, driver, spec (docs/devices.md §3.1)."""
