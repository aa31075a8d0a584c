"""Tests of the systemd unit (systemd/vigil.service) and the installer (scripts/install)."""
