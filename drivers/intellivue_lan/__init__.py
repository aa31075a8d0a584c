"""Philips IntelliVue Data Export over the LAN (UDP): docs/intellivue.md §10."""
