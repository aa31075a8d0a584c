"""Philips IntelliVue Data Export over MIB/RS232 (MP/MX monitors): framing, codec and driver."""
