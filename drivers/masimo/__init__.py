"""Masimo "ASCII 1" serial output (Radical-5/7, Rad-8, Rad-87): codec and driver."""
