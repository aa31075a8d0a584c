"""Device drivers: one folder per protocol, each with a spec listed in `drivers.registry`.

A folder holds the sans-I/O codec, the async driver that has a transport, and ``spec.py``
(kind, settings model, line settings, quiet time, where the driver, decoder and simulator live).
Importing `drivers` imports nothing else (docs/DESIGN.md P5).
"""
