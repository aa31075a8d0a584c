"""`vigil watch --broker URL`: the nurse console's I/O around the pure `WardView`.

One asyncio TaskGroup holds the named tasks: `watch.broker` (connect, subscribe, receive and
publish; reconnected with capped jittered backoff by `monitor.supervisor.supervise`, the one owner
of reconnection) and the screen loop in the foreground, which redraws on every change (at most
10 frames a second) and at least once a second so ages and the STALE verdicts move on their own,
and at once when the terminal is resized (SIGWINCH): each frame is laid out for the terminal's
size at that moment.
Keys arrive through a reader callback on stdin (cbreak mode: one key at a time, no echo, Ctrl-C
still interrupts). `q`, SIGTERM or SIGHUP end the console; the terminal is restored whatever
ends it.

The screen is plain ANSI on the alternate screen buffer: no curses state to tear down and
nothing beyond the standard library, and what `render` returns is exactly what is drawn.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import os
import re
import signal
import sys
import termios
import tty
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final, Self, TextIO
from urllib.parse import unquote, urlsplit

import aiomqtt
from pydantic import ValidationError

from drivers.mqtt import client as mqtt_client
from drivers.mqtt.client import Client as MqttClient
from kernel.clock import Clock, RealClock
from kernel.settings import BrokerSettings, Endpoint
from kernel.tasks import raise_if_cancelled
from monitor.settings import cli_broker
from monitor.supervisor import Backoff, LinkState, LinkStatus, supervise
from monitor.ward import NO_DELAY, tls_context_for
from monitor.watch.model import (
    DEFAULT_HIDE_OFFLINE_S,
    DEFAULT_STALE_S,
    Outgoing,
    WardView,
    to_ansi,
)
from monitor.wire import TOPIC_ROOT, topic_filters

__all__ = ["Terminal", "Watch", "decode_keys", "subscriptions", "watch_main"]

# At least one frame a second: ages, the clock and STALE verdicts change without any message.
REDRAW_S: Final = 1.0
# At most ten frames a second, however busy the ward (vitals arrive several a second per bed).
FRAME_MIN_S: Final = 0.1
# TCP connect and CONNACK, each subscription, each command publish (PUBACK) must finish in this.
BROKER_TIMEOUT_S: Final = 10.0
# MQTT keep-alive: a dead broker link is noticed within 1.5x this (MQTT 3.1.1 §3.1.2.10), and the
# screen then says NOT CONNECTED.
KEEPALIVE_S: Final = 10
# Reconnect backoff cap: a console should be back soon after the broker is.
BACKOFF_CAP_S: Final = 10.0
# Commands waiting for the link; a nurse cannot type faster than this drains.
OUTGOING_MAX: Final = 32
# The retained and live topics the console reads (docs/ARCHITECTURE.md "MQTT").
_TOPICS: Final = ("status", "session", "vitals", "alarms", "alarms/active", "cmd/result")
# Terminal control: alternate screen and hidden cursor; home, clear to end of line / screen.
_ENTER: Final = "\x1b[?1049h\x1b[?25l"
_LEAVE: Final = "\x1b[?25h\x1b[?1049l"
_ARROWS: Final = {b"A": "up", b"B": "down"}
# A ward id as the bed config allows it (monitor/settings.py): no MQTT wildcard can slip in.
_ID: Final = r"[A-Za-z0-9_-]{1,64}"
# A topic root: levels of the same characters, no wildcard and no empty level.
_ROOT: Final = rf"{_ID}(/{_ID})*"

log = logging.getLogger("vigil.watch")


def subscriptions(ward: str | None, root: str = TOPIC_ROOT) -> list[str]:
    """The topic filters for `ward` (every ward when None) under `root`."""
    return topic_filters(_TOPICS, ward=ward, root=root)


def decode_keys(data: bytes) -> list[str]:
    """Key names in raw terminal input: printable characters in lower case, `up`, `down`, `esc`.

    Cursor keys come as `ESC [ A` or `ESC O A` (normal or application cursor mode); any other
    escape sequence is skipped whole, and a lone ESC is the `esc` key.
    """
    keys: list[str] = []
    i = 0
    while i < len(data):
        byte = data[i : i + 1]
        if byte == b"\x1b" and data[i + 1 : i + 2] in {b"[", b"O"}:
            j = i + 2
            while j < len(data) and not 0x40 <= data[j] <= 0x7E:  # CSI final byte
                j += 1
            if (final := data[j : j + 1]) in _ARROWS:
                keys.append(_ARROWS[final])
            i = j + 1
        elif byte == b"\x1b":
            keys.append("esc")
            i += 1
        else:
            char = byte.decode("latin-1")
            if char.isprintable():
                keys.append(char.lower())
            i += 1
    return keys


class Terminal:
    """The terminal in cbreak mode on the alternate screen; restored on exit, even on errors."""

    def __init__(self, *, fd_in: int, out: TextIO) -> None:
        self.fd_in = fd_in
        self.out = out
        self._saved: list[Any] | None = None

    def __enter__(self) -> Self:
        self._saved = termios.tcgetattr(self.fd_in)
        tty.setcbreak(self.fd_in)
        self.out.write(_ENTER)
        self.out.flush()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # after a hang-up (SIGHUP) the terminal is gone: nothing left to restore
        with contextlib.suppress(OSError, termios.error):
            self.out.write(_LEAVE)
            self.out.flush()
            if self._saved is not None:
                termios.tcsetattr(self.fd_in, termios.TCSADRAIN, self._saved)

    def size(self) -> tuple[int, int]:
        """Columns and rows."""
        size = os.get_terminal_size(self.out.fileno())
        return size.columns, size.lines

    def draw(self, lines: list[str], *, bells: int) -> None:
        """Replace the screen with `lines` (already fitted) in one write; ring `bells` BELs."""
        frame = "\x1b[H" + "\x1b[K\r\n".join(lines) + "\x1b[K\x1b[J" + "\a" * bells
        self.out.write(frame)
        self.out.flush()


class Watch:
    """The console: a `WardView` fed from the broker and the keyboard, drawn on a `Terminal`."""

    def __init__(
        self, view: WardView, broker: BrokerSettings, *, terminal: Terminal, clock: Clock
    ) -> None:
        self.view = view
        self.broker = broker
        self.terminal = terminal
        self.clock = clock
        self.status = LinkStatus(name="watch")
        self.status.listeners.append(self._on_link)
        self._dirty = asyncio.Event()
        self._outgoing: asyncio.Queue[Outgoing] = asyncio.Queue(maxsize=OUTGOING_MAX)

    async def run(self) -> None:
        """Until `q` (or SIGTERM/SIGHUP); cancellation ends it too and is re-raised."""
        loop = asyncio.get_running_loop()
        loop.add_reader(self.terminal.fd_in, self._on_input)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, self._quit)
        # a resized window is drawn anew at once, laid out for its new size
        loop.add_signal_handler(signal.SIGWINCH, self._dirty.set)
        try:
            async with asyncio.TaskGroup() as tg:
                link = tg.create_task(
                    supervise(
                        self.status,
                        self._serve,
                        errors=(aiomqtt.MqttError, TimeoutError, OSError),
                        backoff=Backoff(cap=BACKOFF_CAP_S),
                        now=self.clock.now,
                    ),
                    name="watch.broker",
                )
                await self._screen()
                link.cancel()
        finally:
            loop.remove_reader(self.terminal.fd_in)
            for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGWINCH):
                loop.remove_signal_handler(sig)

    # ------------------------------------------------------------------ screen and keys

    async def _screen(self) -> None:
        while not self.view.quit:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REDRAW_S):
                    await self._dirty.wait()
            self._dirty.clear()
            if self.view.quit:
                return
            try:
                self._draw()
            except OSError:  # the terminal went away (hang-up)
                return
            await asyncio.sleep(FRAME_MIN_S)

    def _draw(self) -> None:
        columns, rows = self.terminal.size()
        # one column and one row spare: a full last line would scroll the screen on many terms
        width = max(1, columns - 1)
        lines = self.view.render(self.clock.now(), height=max(1, rows - 1), width=width)
        self.terminal.draw([to_ansi(line, width) for line in lines], bells=self.view.take_bells())

    def _on_input(self) -> None:
        try:
            data = os.read(self.terminal.fd_in, 1024)
        except OSError:
            data = b""
        if not data:  # end of input: no one can use the console any more
            self._quit()
            return
        for key in decode_keys(data):
            for command in self.view.press(key, self.clock.now()):
                try:
                    self._outgoing.put_nowait(command)
                except asyncio.QueueFull:
                    self.view.send_failed(command.request_id, "too many commands queued")
        self._dirty.set()

    def _quit(self) -> None:
        self.view.quit = True
        self._dirty.set()

    def _on_link(self, status: LinkStatus) -> None:
        connected = status.state is LinkState.CONNECTED
        self.view.set_link(connected=connected, error=None if connected else status.last_error)
        self._dirty.set()

    # ------------------------------------------------------------------ broker

    def _client(self, protocol: aiomqtt.ProtocolVersion, endpoint: Endpoint) -> aiomqtt.Client:
        b = self.broker
        parts = urlsplit(b.url)
        user = re.sub(r"[^A-Za-z0-9_-]", "_", self.view.user)[:32]
        return MqttClient(
            endpoint.host,
            endpoint.port,
            username=b.username or (unquote(parts.username) if parts.username else None),
            password=(
                b.password.get_secret_value()
                if b.password is not None
                else (unquote(parts.password) if parts.password else None)
            ),
            identifier=f"vigil-watch-{user}-{uuid.uuid4().hex[:6]}",
            protocol=protocol,
            keepalive=KEEPALIVE_S,
            tls_context=tls_context_for(b),
            timeout=BROKER_TIMEOUT_S,
            socket_options=NO_DELAY,
        )

    async def _serve(self, connected: Callable[[], None]) -> None:
        # Commands typed before this connection are not sent late: a nurse acts on what the
        # screen shows now (docs/DESIGN.md P11, never auto-resend a command with side effects).
        while not self._outgoing.empty():
            stale = self._outgoing.get_nowait()
            self.view.send_failed(stale.request_id, "the broker link was lost before sending")
        # --mqtt-version: MQTT 5, else 3.1.1 where the broker refuses 5 (drivers/mqtt/client.py)
        b = self.broker
        async with mqtt_client.connect(b.protocol, b.endpoints, self._client) as client:
            for topic in subscriptions(self.view.ward, self.view.root):
                await client.subscribe(topic, qos=1, timeout=BROKER_TIMEOUT_S)
                raise_if_cancelled()
            connected()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._receive(client), name="watch.receive")
                tg.create_task(self._send(client), name="watch.send")

    async def _receive(self, client: aiomqtt.Client) -> None:
        # A silent broker is caught by the keep-alive: aiomqtt then ends this iteration with
        # MqttError, and the supervisor reconnects.
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            self.view.handle(str(message.topic), payload, self.clock.now(), retained=message.retain)
            self._dirty.set()

    async def _send(self, client: aiomqtt.Client) -> None:
        # Waiting for the nurse's next command needs no timeout; each publish has one (PUBACK).
        while True:
            command = await self._outgoing.get()
            try:
                await client.publish(
                    command.topic, command.payload, qos=1, timeout=BROKER_TIMEOUT_S
                )
            except aiomqtt.MqttError as exc:
                self.view.send_failed(command.request_id, str(exc))
                self._dirty.set()
                raise
            raise_if_cancelled()


def watch_main(args: argparse.Namespace) -> int:
    """`vigil watch --broker URL [--ward W] [--user NAME] [--stale-s S] [--hide-offline-after S]`.

    Exit 2 on a bad option or without a terminal; 0 when the nurse quits.
    """
    try:
        broker = cli_broker(args, args.broker)
    except ValidationError as exc:
        reason = "; ".join(str(e["msg"]) for e in exc.errors())
        print(f"vigil watch: bad --broker {args.broker!r}: {reason}", file=sys.stderr)
        return 2
    if args.ward is not None and not re.fullmatch(_ID, args.ward):
        print(f"vigil watch: bad --ward {args.ward!r}: letters, digits, _ and -", file=sys.stderr)
        return 2
    root = getattr(args, "topic_root", None) or TOPIC_ROOT
    if not re.fullmatch(_ROOT, root):
        print(f"vigil watch: bad --topic-root {root!r}: no wildcards", file=sys.stderr)
        return 2
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print("vigil watch: needs a terminal (stdin and stdout)", file=sys.stderr)
        return 2
    # The screen is the console's only output: link errors are shown on it, so log records
    # must not scribble over it (a NullHandler on the root stops logging's stderr fallback).
    logging.getLogger().addHandler(logging.NullHandler())
    view = WardView(
        user=args.user or getpass.getuser(),
        ward=args.ward,
        root=root,
        stale_s=args.stale_s if args.stale_s is not None else DEFAULT_STALE_S,
        # shown on screen: without any password the URL may carry
        broker=f"{urlsplit(broker.url).scheme}://{broker.host}:{broker.port}",
        login=broker.username,
        hide_offline_s=(
            args.hide_offline_after
            if args.hide_offline_after is not None
            else DEFAULT_HIDE_OFFLINE_S
        ),
    )
    with (
        contextlib.suppress(KeyboardInterrupt),
        Terminal(fd_in=sys.stdin.fileno(), out=sys.stdout) as terminal,
    ):
        asyncio.run(Watch(view, broker, terminal=terminal, clock=RealClock()).run())
    return 0
