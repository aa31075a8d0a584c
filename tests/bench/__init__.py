"""Tests of the benchmark scripts in bench/ that must keep working."""
