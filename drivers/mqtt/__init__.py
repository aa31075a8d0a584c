"""Monitors that publish over MQTT: Vigil Sample JSON and VSCaptureMP's numeric export.

`codec` is the sans-I/O part (payload bytes to samples), `driver` the asyncio part.
"""
