"""Test and bench helpers: free loopback ports and a real MQTT broker in a child process.

Importable as `helpers` from any test (pytest puts `tests/` on `sys.path` for the root conftest)
and from `bench/` scripts that add `tests/` to their path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, Self

from kernel.vocabulary import CHECKLIST_ITEMS, Param, Sample

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterable, Iterator
    from types import TracebackType

    import aiomqtt

    from drivers.base import Driver
    from drivers.mqtt.client import Client
    from monitor.daemon import Daemon
    from monitor.settings import Settings

__all__ = [
    "MQTT_MONITOR",
    "BrokerImplementation",
    "BrokerProcess",
    "ListSink",
    "NotifyReceiver",
    "bed_settings",
    "client_of",
    "first_message",
    "free_port",
    "mosquitto_path",
    "next_json",
    "open_session_command",
    "pieces",
    "run_vigil",
    "running_bed",
    "running_driver",
    "stop_process",
    "wait_for_port",
    "write_bed_config",
]

BrokerImplementation = Literal["mosquitto", "amqtt"]

# Debian installs the broker in /usr/sbin, which is not on a non-root user's PATH.
_MOSQUITTO_FALLBACK = Path("/usr/sbin/mosquitto")

# Environment variable that forces the broker implementation of the test fixtures, so the amqtt
# fallback can be exercised on a machine that has mosquitto.
BROKER_ENV = "VIGIL_TEST_BROKER"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that was free a moment ago.

    The OS picks it (bind to port 0); another process may take it before the caller binds it,
    which on a test machine's loopback is rare enough to accept.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def mosquitto_path() -> str | None:
    """The mosquitto executable: on PATH, else `/usr/sbin/mosquitto`, else None."""
    found = shutil.which("mosquitto")
    if found is not None:
        return found
    if os.access(_MOSQUITTO_FALLBACK, os.X_OK):
        return str(_MOSQUITTO_FALLBACK)
    return None


def wait_for_port(host: str, port: int, *, timeout: float) -> bool:
    """Poll until `host:port` accepts a TCP connection; False if `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)


class BrokerProcess:
    """A real MQTT broker in a child process, on one loopback port for its whole life.

    `start()` launches it and returns once the port accepts TCP connections; `stop()` terminates
    it and reaps it. Both may be called again, so a test can take the broker away and bring it
    back on the same URL (a broker outage). Persistence is off unless `persistent`: then (mosquitto
    only) the broker saves retained messages, sessions and their queued messages when stopped
    and loads them when started, as a ward broker configured by config/mosquitto does; without
    it a restarted broker has forgotten them all.

    The broker is mosquitto when installed, else Vigil's embedded amqtt broker run as
    `python -m monitor.embedded_broker` (see that module for what amqtt does not support).
    `VIGIL_TEST_BROKER=embedded` (or its alias `amqtt`, or `mosquitto`) forces the choice;
    .ci/run runs the tests not marked `mosquitto_only` again with `embedded`.

    `start()` and `stop()` block (for milliseconds with mosquitto, about a second for amqtt's
    interpreter start-up); tests call them between steps, not on a path that must stay live.

    `config` (mosquitto only) replaces the generated mosquitto.conf with the given text, e.g. the
    shipped example rendered with test paths (tests/monitor/test_broker_security.py). It must
    listen on `host:port`, since readiness is that port accepting TCP connections; `url` still
    says mqtt://, so a TLS listener's caller builds its own mqtts:// URL.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        implementation: BrokerImplementation | None = None,
        start_timeout: float = 15.0,
        persistent: bool = False,
        config: str | None = None,
    ) -> None:
        self.host = host
        self.port = free_port(host) if port is None else port
        self.implementation: BrokerImplementation = implementation or _default_implementation()
        self._workdir = workdir
        self._start_timeout = start_timeout
        if persistent and self.implementation != "mosquitto":
            raise RuntimeError("a persistent broker needs mosquitto (amqtt keeps nothing)")
        self.persistent = persistent
        if config is not None and self.implementation != "mosquitto":
            raise RuntimeError("a broker config file needs mosquitto")
        self._config = config
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "broker.log"

    @property
    def url(self) -> str:
        """`mqtt://HOST:PORT`, the same across restarts."""
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Launch the broker and wait until it accepts connections.

        Raises:
            RuntimeError: the broker exited or did not listen within the start timeout; the
                message carries its log.
        """
        if self.running:
            raise RuntimeError(f"broker already running on {self.url}")
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            self._argv(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self._workdir,
        )
        if not wait_for_port(self.host, self.port, timeout=self._start_timeout) or not self.running:
            self.stop()
            raise RuntimeError(
                f"{self.implementation} did not start on {self.url}:\n{self.log_text()}"
            )

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the broker (SIGTERM, SIGKILL after `timeout` s) and reap it; idempotent."""
        self._end(timeout)

    def kill(self) -> None:
        """SIGKILL the broker and reap it, as a crash would end it: nothing saved, no goodbye."""
        self._end(None)

    def _end(self, timeout: float | None) -> None:
        # SIGTERM and `timeout` s to go, or (None) SIGKILL at once; then close the log
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            if timeout is not None:
                process.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout)
            if process.poll() is None:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_text(self) -> str:
        """What the broker has logged so far (for failure messages)."""
        with contextlib.suppress(FileNotFoundError):
            return self.log_path.read_text(errors="replace")
        return ""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _argv(self) -> list[str]:
        if self.implementation == "amqtt":
            return [
                sys.executable,
                "-m",
                "monitor.embedded_broker",
                "--host",
                self.host,
                "--port",
                str(self.port),
            ]
        executable = mosquitto_path()
        if executable is None:
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        conf = self._workdir / "mosquitto.conf"
        if self._config is not None:
            conf.write_text(self._config)
            return [executable, "-c", str(conf)]
        conf.write_text(
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n"
            # as a ward broker should be configured (config/mosquitto): no Nagle delay
            "set_tcp_nodelay true\n"
            # as config/mosquitto sizes it: the default 1000 queued QoS 1 messages per client
            # would drop part of an alarm backlog sent faster than a subscriber takes it in
            "max_queued_messages 20000\n"
            + self._persistence()
            # stderr goes to broker.log (opened by us, so mosquitto dropping root privileges to
            # its own user cannot make the log unwritable).
            + "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
            "connection_messages true\n"
            "log_timestamp_format %Y-%m-%dT%H:%M:%S\n"
        )
        return [executable, "-c", str(conf)]

    def _persistence(self) -> str:
        if not self.persistent:
            return "persistence false\n"
        store = self._workdir / "store"
        store.mkdir(exist_ok=True)
        # mosquitto started as root drops to the configured user (ignored when not root),
        # and root keeps root: pytest's temporary folders are private to their owner
        return f"persistence true\npersistence_location {store}/\nautosave_interval 0\nuser root\n"


def _default_implementation() -> BrokerImplementation:
    forced = os.environ.get(BROKER_ENV, "")
    if forced in ("mosquitto", "amqtt", "embedded"):
        return "mosquitto" if forced == "mosquitto" else "amqtt"
    if forced:
        raise RuntimeError(
            f"{BROKER_ENV} must be 'mosquitto' or 'embedded' (alias 'amqtt'), not {forced!r}"
        )
    return "mosquitto" if mosquitto_path() is not None else "amqtt"


MQTT_MONITOR: str = 'kind = "mqtt"\ndevice_id = "mon1"\ntopic = "monitors/mon1/samples"\n'


def bed_settings(url: str, tmp_path: Path, **tables: Any) -> Settings:
    """The settings of a bed under test: w1/b1 on the broker at `url`, its journal in
    `tmp_path`, metrics off, one MQTT monitor (mon1 on monitors/mon1/samples).

    Each of `tables` updates the table of that name (`broker={"protocol": "3.1.1"}`), or
    replaces it where it is not a table (`drivers=[...]`).
    """
    from monitor.settings import Settings  # noqa: PLC0415 - see running_bed

    data: dict[str, Any] = {
        "bed": {"ward": "w1", "bed": "b1"},
        "broker": {"url": url},
        "journal": {"path": str(tmp_path / "journal.sqlite")},
        "metrics": {"enabled": False},
        "drivers": [{"kind": "mqtt", "device_id": "mon1", "topic": "monitors/mon1/samples"}],
    }
    for name, table in tables.items():
        data[name] = {**data.get(name, {}), **table} if isinstance(table, dict) else table
    return Settings.model_validate(data)


def write_bed_config(
    path: Path,
    broker: BrokerProcess,
    *,
    driver: str = MQTT_MONITOR,
    speed: float | None = None,
    anchor: float | None = None,
    extra: str = "",
    bed: str = "b1",
) -> Path:
    """A bed config for a `vigil run` under test: bed w1/`bed` on `broker`, journal beside it.

    Metrics are off (one port fewer to clash on). `driver` is the body of the one
    `[[drivers]]` entry; with `speed` the daemon runs on a simulated clock from `anchor`;
    `extra` is more TOML (sections) put before the driver.
    """
    protocol = "5" if broker.implementation == "mosquitto" else "3.1.1"
    clock = f"[clock]\nspeed = {speed}\nanchor = {anchor}\n" if speed is not None else ""
    path.write_text(
        f'[bed]\nward = "w1"\nbed = "{bed}"\n'
        f'[broker]\nurl = "{broker.url}"\nprotocol = "{protocol}"\n'
        f'[journal]\npath = "{path.parent / "journal.sqlite"}"\n'
        f"[metrics]\nenabled = false\n{clock}{extra}"
        f"[[drivers]]\n{driver}"
    )
    return path


async def stop_process(proc: asyncio.subprocess.Process, timeout: float = 10.0) -> int:  # noqa: ASYNC109 - a plain bound
    """SIGTERM, then SIGKILL after `timeout` s; the exit status."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(timeout):
            return await proc.wait()
    except TimeoutError:
        proc.kill()
        return await proc.wait()


@contextlib.asynccontextmanager
async def running_bed(
    settings: Settings, broker: BrokerProcess, identifier: str
) -> AsyncIterator[tuple[Daemon, Client]]:
    """A daemon on `settings`, its ward link up, and a client of `broker` named `identifier`."""
    # imported here: bench scripts and every test import this module for the broker alone
    from alarms.policy import load_policy  # noqa: PLC0415
    from drivers.mqtt.client import Client  # noqa: PLC0415
    from monitor.daemon import Daemon  # noqa: PLC0415

    async with (
        Daemon(settings, load_policy()) as daemon,
        Client(broker.host, broker.port, identifier=identifier) as client,
    ):
        await daemon.connected(10)
        yield daemon, client


class NotifyReceiver:
    """What systemd does: a datagram socket bound at NOTIFY_SOCKET, read one message at a time."""

    def __init__(self, address: str) -> None:
        self.env_address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)

    def close(self) -> None:
        self.sock.close()

    def pending(self) -> list[list[str]]:
        """Every datagram already received, each as its lines."""
        out = []
        while True:
            try:
                out.append(self.sock.recv(4096).decode().split("\n"))
            except BlockingIOError:
                return out

    def recv(self, timeout: float = 2.0) -> list[str]:
        """The next datagram as its lines (blocking, bounded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.pending()
            if got:
                assert len(got) == 1, got
                return got[0]
            time.sleep(0.01)
        raise AssertionError("no notification received")

    async def next(self, timeout: float) -> list[str]:  # noqa: ASYNC109 - a plain bound
        """The next datagram as its lines, from the event loop."""
        async with asyncio.timeout(timeout):
            data = await asyncio.get_running_loop().sock_recv(self.sock, 4096)
        return data.decode().split("\n")


@contextlib.asynccontextmanager
async def running_driver(
    driver: Driver, sink: ListSink, connected: Callable[[], None] | None = None
) -> AsyncIterator[asyncio.Task[None]]:
    """The driver's `run(sink, connected)` as a task; on the way out cancelled and awaited, the
    `DeviceError` it may end with (the device a test unplugged) left to the test to look at."""
    from drivers.base import DeviceError  # noqa: PLC0415 - see running_bed

    run = driver.run(sink) if connected is None else driver.run(sink, connected)
    task = asyncio.create_task(run, name=f"test-driver[{driver.device_id}]")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, DeviceError):
            await task


class ListSink:
    """A driver's `SampleSink` that keeps every sample; `grew` is set by each new one."""

    def __init__(self) -> None:
        self.samples: list[Sample] = []
        self.grew = asyncio.Event()

    def put(self, sample: Sample) -> None:
        self.samples.append(sample)
        self.grew.set()

    def of(self, param: Param) -> list[float]:
        """The values of `param`'s samples, in order."""
        return [s.value for s in self.samples if s.param is param]

    async def wait_for(self, n: int, param: Param = Param.HR) -> None:
        """Until `n` samples of `param` have come (10 s at most)."""
        async with asyncio.timeout(10):
            while len(self.of(param)) < n:
                self.grew.clear()
                await self.grew.wait()


def run_vigil(
    *args: str | Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """`vigil ARGS` in a child process (`python -m monitor.cli`), its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "monitor.cli", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env=env,
        cwd=cwd,
    )


def open_session_command(
    request_id: str, *, patient_id: str = "P1", user: str = "ann", weight_kg: float = 80.0
) -> dict[str, Any]:
    """An `open_session` command (docs/ARCHITECTURE.md "Commands") that a bed accepts: 10 mg/ml,
    every item of the contraindication checklist answered, none ticked."""
    return {
        "cmd": "open_session",
        "request_id": request_id,
        "user": user,
        "patient_id": patient_id,
        "weight_kg": weight_kg,
        "concentration_mg_per_ml": 10.0,
        "checklist": dict.fromkeys(CHECKLIST_ITEMS, False),
    }


def pieces(data: bytes, cuts: Iterable[int]) -> Iterator[bytes]:
    """`data` cut into pieces of the lengths in `cuts`, then the rest (a codec's any-split test)."""
    i = 0
    for n in cuts:
        yield data[i : i + n]
        i += n
    yield data[i:]


def client_of(url: str, **kwargs: object) -> Client:
    """A client (not yet connected) of the broker at the ``mqtt://host:port`` `url`."""
    from urllib.parse import urlsplit  # noqa: PLC0415 - beside the lazy client import

    from drivers.mqtt.client import Client  # noqa: PLC0415 - see running_bed

    parts = urlsplit(url)
    assert parts.scheme == "mqtt"
    assert parts.hostname is not None
    assert parts.port is not None
    return Client(parts.hostname, parts.port, **kwargs)  # type: ignore[arg-type]


async def first_message(client: aiomqtt.Client) -> aiomqtt.Message:
    """The next message `client` receives (5 s at most)."""
    async with asyncio.timeout(5):
        async for message in client.messages:
            return message
    raise AssertionError("message stream ended")


async def next_json(client: aiomqtt.Client, topic: str, timeout: float = 10.0) -> dict[str, Any]:  # noqa: ASYNC109 - a plain bound
    """The next message on `topic` (others are skipped), as JSON; `timeout` s at most."""
    async with asyncio.timeout(timeout):
        async for message in client.messages:
            if str(message.topic) == topic:
                assert isinstance(message.payload, bytes)
                data: dict[str, Any] = json.loads(message.payload)
                return data
    raise AssertionError("message stream ended")
