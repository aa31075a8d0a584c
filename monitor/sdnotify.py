"""A minimal sd_notify client (systemd's stable notify protocol, `man sd_notify`), no dependency.

`NOTIFY_SOCKET` names an AF_UNIX datagram socket (a path, or an abstract socket when it starts
with `@`); each notification is one datagram of newline-separated `KEY=VALUE` lines. The
watchdog is enabled by `WATCHDOG_USEC`, unless `WATCHDOG_PID` names another process.
Sending never blocks and never raises: a lost notification must not hurt the alarm path.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

__all__ = ["SdNotifier"]

log = logging.getLogger("vigil.sdnotify")


class SdNotifier:
    """Sends notifications to systemd; every method is a no-op without `NOTIFY_SOCKET`."""

    def __init__(self, address: str | None, *, watchdog_usec: int | None = None) -> None:
        self.address = address
        self.watchdog_usec = watchdog_usec
        self._warned = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> SdNotifier:
        """The notifier systemd configured for this process through the environment."""
        raw = environ.get("NOTIFY_SOCKET") or None
        address = None
        if raw is not None and raw[0] == "@":
            address = "\0" + raw[1:]
        elif raw is not None and raw[0] == "/":
            address = raw
        elif raw is not None:
            log.warning("event=notify_socket_unsupported address=%r", raw)
        usec: int | None = None
        pid = environ.get("WATCHDOG_PID")
        try:
            usec = int(environ.get("WATCHDOG_USEC", ""))
            if pid is not None and int(pid) != os.getpid():
                usec = None  # the watchdog is another process's (sd_watchdog_enabled)
        except ValueError:
            usec = None
        return cls(address, watchdog_usec=usec if usec is not None and usec > 0 else None)

    @property
    def enabled(self) -> bool:
        """Whether notifications go anywhere."""
        return self.address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`; None when not enabled."""
        if self.address is None or self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 2e6

    def notify(self, *lines: str) -> bool:
        """Send `lines` as one datagram; return whether it was sent. Never blocks or raises."""
        if self.address is None:
            return False
        try:
            kind = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
            with socket.socket(socket.AF_UNIX, kind) as sock:
                sock.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("event=sd_notify_failed error=%r (warned once)", exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """`READY=1` (with a `STATUS=` line when given)."""
        return self.notify("READY=1", *([f"STATUS={status}"] if status is not None else []))

    def status(self, text: str) -> bool:
        """`STATUS=text`, shown by `systemctl status`."""
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        """`WATCHDOG=1`: the service is alive."""
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        """`STOPPING=1`: shutdown has begun."""
        return self.notify("STOPPING=1")
