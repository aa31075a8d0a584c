"""`vigil watch`: the nurse console for the nurses' station (docs/ARCHITECTURE.md "CLI").

`model` is the pure part (what the ward looks like, the screen, the keys); `app` is the I/O
around it (broker, terminal, keyboard). The CLI entry point `watch_main` is re-exported here.
"""

from __future__ import annotations

from monitor.watch.app import watch_main

__all__ = ["watch_main"]
