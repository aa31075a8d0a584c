"""One way for every Vigil client to connect: MQTT 5 where the broker speaks it, 3.1.1 otherwise.

The brokers the README names differ: mosquitto speaks MQTT 5 and 3.1.1, the embedded amqtt broker
(`monitor.embedded_broker`) only 3.1.1. Every client (the daemon's ward link and MQTT driver,
`vigil cmd`, `vigil watch`, the simulators, the demo's console) connects through `connect`,
with the version a config's ``broker.protocol`` or a command's ``--mqtt-version`` names:

- ``"5"`` or ``"3.1.1"``: that version only; a broker refusing it is an error;
- ``"auto"`` (the default): MQTT 5 first; when the broker answers that CONNECT with a CONNACK
  refusing the protocol version (3.1.1 return code 1, MQTT 5 reason 0x84), the same client
  settings again with 3.1.1. Any other failure (no broker, bad credentials, TLS) is not a
  version question and is raised as it is, without a second attempt.

Failover (docs/ARCHITECTURE.md "Broker failover"): `connect` is given the ordered brokers of a
config (``BrokerSettings.endpoints``: ``url``, then ``failover``) and tries them in that order,
each with the version rule above; the first that takes the connection serves until it is lost.
So a client moves to the next broker when one is unreachable (refused at once when its process
is gone; after ``timeout`` when its host is silent), and goes back to the first at its next
connection, never while a later one serves it: a bridged pair carries every message to both
(config/mosquitto/README.md "A redundant pair"), and leaving a working broker would only risk
the alarms in flight. `endpoint_of` says which broker a connected client reached.

`speaks_v5` tells a connected client's version, for what only MQTT 5 carries (message expiry).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import threading
from typing import TYPE_CHECKING, Any, Final, Literal, Self, cast, get_args

import aiomqtt
from paho.mqtt.client import MQTTv5
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from kernel.settings import Endpoint

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence
    from types import TracebackType

__all__ = [
    "MQTT_VERSIONS",
    "Client",
    "MqttVersion",
    "connect",
    "endpoint_of",
    "protocols",
    "refusal_hint",
    "session_options",
    "speaks_v5",
]

log = logging.getLogger("vigil.mqtt")

MqttVersion = Literal["auto", "5", "3.1.1"]
MQTT_VERSIONS: Final[tuple[str, ...]] = get_args(MqttVersion)

# CONNACK codes that refuse the protocol version itself: 3.1.1 §3.2.2.3 return code 1,
# MQTT 5 §3.2.2.2 reason 0x84 (paho reports a 3.1.1 broker's answer to a v5 CONNECT as 0x84).
_VERSION_REFUSED: Final = frozenset({1, 0x84})


class Client(aiomqtt.Client):
    """`aiomqtt.Client`, with its socket bookkeeping kept in order; every Vigil client is one.

    aiomqtt (2.5) registers a socket's reader and writer with the event loop through
    `call_soon_threadsafe`, because paho may open the socket on the executor thread of
    `connect`, but removes them at once when paho closes the socket, and never removes the
    writer on close. A registration still queued when its socket closes (a connection dropped
    just after it opened, as when a broker restarts) then lands after the socket is gone, on
    its file descriptor number, which the next socket may already hold: the loop's selector
    is left with a key the kernel's epoll set does not have, and adding the next socket's
    reader fails in the selector (`FileNotFoundError` from epoll `modify`). That client is
    connected but never reads: no sample, no command, until it is restarted.

    So on close the reader and writer are removed at once (the descriptor is still open:
    paho closes it after this callback) and once more through the same queue, after any
    registration queued before the close; a socket opened later queues its own registration
    after that. Removing what is not registered is a no-op. A registration that lands after its
    descriptor was closed (and not yet reused) is refused by epoll with EBADF: it is dropped
    (`_Registrations`), as there is nothing left to watch.

    A connect that is cancelled (every wait of Vigil's has a timeout) is given up cleanly.
    aiomqtt's `__aenter__` handles only the errors of a failed connect: cancelled while paho
    connects on the executor thread, or while the CONNACK is awaited, it left the socket open
    and connected, pinged by its keep-alive task, with the client's id, an unretrieved error
    and, on the broker's reply, a `CancelledError` raised inside the event loop's reader
    callback (`_on_disconnect` asks the cancelled `_connected` future for its exception). Here
    the connection is closed with a DISCONNECT (MQTT 5 §3.14, 3.1.1 §3.14: the broker then
    discards the client's will, so a given-up attempt never publishes "offline" over a
    working connection), once paho's connect has returned, on the loop's thread.
    """

    async def __aenter__(self) -> Self:
        # set here rather than in `__init__`, which keeps aiomqtt's typed signature: paho's
        # callbacks start with this connect
        if not isinstance(self._loop, _Registrations):
            self._loop = cast("asyncio.AbstractEventLoop", _Registrations(self._loop))
        # `_given_up` is set on the loop's thread, `_connect_returned` on paho's connect thread
        self._attempt = threading.Lock()
        self._given_up = self._connect_returned = False
        try:
            return await super().__aenter__()
        except asyncio.CancelledError:
            self._give_up()
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        lost = self._disconnected
        error = lost.exception() if lost.done() and not lost.cancelled() else None
        if error is not None:
            # the operations that failed on it have raised it already (aiomqtt returns early
            # here without reading it: asyncio would report it "never retrieved")
            log.debug("event=mqtt_connection_lost error=%s", error)
        await super().__aexit__(exc_type, exc, tb)

    def _client_connect(self) -> None:
        """Paho's blocking connect (on the executor thread); closed at once if given up."""
        try:
            super()._client_connect()
        finally:
            with self._attempt:
                self._connect_returned = True
                given_up = self._given_up
            if given_up and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self._close_given_up)

    def _give_up(self) -> None:
        """The connect was cancelled: free the client and close what it opened, or will open."""
        if self._lock.locked():
            self._lock.release()
        if not self._connected.done():
            self._connected.cancel()  # nobody waits for the CONNACK any more
        with self._attempt:
            self._given_up = True
            returned = self._connect_returned
        if returned:  # else `_client_connect` closes it when paho returns
            self._close_given_up()

    def _close_given_up(self) -> None:
        if self._client.socket() is not None:
            self._client.disconnect()  # paho closes the socket once DISCONNECT is written

    def _on_disconnect(self, *args: Any, **kwargs: Any) -> None:
        if self._connected.cancelled():
            return  # a connect given up: nobody waits for its end (`_give_up`)
        super()._on_disconnect(*args, **kwargs)

    def _on_socket_close(self, client: Any, userdata: Any, sock: Any) -> None:
        del client, userdata
        fileno = sock.fileno()
        loop = self._loop
        if fileno > -1:
            loop.remove_reader(fileno)
            loop.remove_writer(fileno)
            if not loop.is_closed():
                loop.call_soon_threadsafe(self._forget, fileno)
        misc = self._misc_task
        if misc is not None and not misc.done() and not loop.is_closed():
            loop.call_soon_threadsafe(misc.cancel)

    def _on_socket_unregister_write(self, client: Any, userdata: Any, sock: Any) -> None:
        del client, userdata
        fileno = sock.fileno()
        self._loop.remove_writer(fileno)
        if not self._loop.is_closed():
            # after an `add_writer` still queued: the last word is this one
            self._loop.call_soon_threadsafe(self._loop.remove_writer, fileno)

    def _forget(self, fileno: int) -> None:
        """Remove what a registration queued before its socket closed left on `fileno`."""
        try:
            self._loop.remove_reader(fileno)
            self._loop.remove_writer(fileno)
        except OSError as exc:  # a stale key on a closed descriptor cannot be modified
            log.warning("mqtt socket %d: stale event loop registration: %s", fileno, exc)


class _Registrations:
    """A client's event loop, whose socket registrations may land after the socket closed.

    aiomqtt queues them from paho's thread (`Client`); one whose descriptor is closed by then
    is refused by epoll with EBADF and dropped: nothing is left to watch.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._real = loop

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def add_reader(self, fd: int, callback: Callable[..., object], *args: Any) -> None:
        self._register(self._real.add_reader, fd, callback, *args)

    def add_writer(self, fd: int, callback: Callable[..., object], *args: Any) -> None:
        self._register(self._real.add_writer, fd, callback, *args)

    @staticmethod
    def _register(
        add: Callable[..., None], fd: int, callback: Callable[..., object], *args: Any
    ) -> None:
        try:
            add(fd, callback, *args)
        except OSError as exc:
            if exc.errno != errno.EBADF:
                raise
            log.debug("mqtt socket %d closed before its registration ran", fd)


def protocols(version: MqttVersion) -> tuple[aiomqtt.ProtocolVersion, ...]:
    """The protocol versions `connect` tries for `version`, in order."""
    if version == "5":
        return (aiomqtt.ProtocolVersion.V5,)
    if version == "3.1.1":
        return (aiomqtt.ProtocolVersion.V311,)
    return (aiomqtt.ProtocolVersion.V5, aiomqtt.ProtocolVersion.V311)


def _refuses_version(exc: aiomqtt.MqttError) -> bool:
    if not isinstance(exc, aiomqtt.MqttCodeError):
        return False
    rc = exc.rc
    code = rc.value if isinstance(rc, ReasonCode) else rc
    return code in _VERSION_REFUSED


@contextlib.asynccontextmanager
async def connect(
    version: MqttVersion,
    endpoints: Sequence[Endpoint],
    build: Callable[[aiomqtt.ProtocolVersion, Endpoint], aiomqtt.Client],
) -> AsyncIterator[aiomqtt.Client]:
    """Connect a client made by `build(protocol, endpoint)`; disconnect it when the block ends.

    `endpoints` are tried in order (failover, module docstring); `build` is called once per
    attempt (an aiomqtt client connects once) and must make the same client each time but for
    the protocol version and the broker. See the module docstring for `version`.

    Raises:
        aiomqtt.MqttError: no broker of `endpoints` could be reached or took the connection:
            the last one's error (each earlier one is logged); with ``"auto"``, the 3.1.1
            attempt's error once MQTT 5 was refused.
    """
    if not endpoints:
        raise ValueError("no broker to connect to")
    attempts = protocols(version)
    async with contextlib.AsyncExitStack() as stack:
        for n, endpoint in enumerate(endpoints):
            for i, protocol in enumerate(attempts):
                client = build(protocol, endpoint)
                try:
                    await stack.enter_async_context(client)
                except aiomqtt.MqttError as exc:
                    if i + 1 < len(attempts) and _refuses_version(exc):
                        log.debug("event=mqtt5_refused falling_back=3.1.1 error=%s", exc)
                        continue
                    if n + 1 == len(endpoints):
                        raise
                    log.info(
                        "event=broker_unreachable broker=%s next=%s error=%s",
                        endpoint,
                        endpoints[n + 1],
                        exc,
                    )
                    break
                if n:
                    log.warning("event=broker_failover broker=%s skipped=%d", endpoint, n)
                yield client
                return
    raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover


def endpoint_of(client: aiomqtt.Client) -> Endpoint:
    """The broker `client` was made for (after `connect`: the one that took it)."""
    return Endpoint(client._hostname, client._port)  # noqa: SLF001 - aiomqtt keeps them private


def session_options(protocol: aiomqtt.ProtocolVersion, expiry_s: int) -> dict[str, Any]:
    """`aiomqtt.Client` arguments for a session the broker keeps `expiry_s` while we are away.

    MQTT 5 (§3.1.2.4, §3.1.2.11.2): Clean Start 0 and a Session Expiry Interval; MQTT 3.1.1
    (§3.1.2.4): Clean Session 0 (the broker keeps it until its own expiry, mosquitto's
    ``persistent_client_expiration``). `expiry_s` 0: a clean session every time.
    """
    persistent = expiry_s > 0
    if protocol is aiomqtt.ProtocolVersion.V5:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho is untyped
        properties.SessionExpiryInterval = expiry_s
        return {"clean_start": not persistent, "properties": properties}
    return {"clean_session": not persistent}


def refusal_hint(exc: aiomqtt.MqttError, version: MqttVersion) -> str:
    """What to try when the broker refused the version asked for ("" for other errors)."""
    if version != "auto" and _refuses_version(exc):
        return f" (the broker does not speak MQTT {version}: try --mqtt-version auto)"
    return ""


def speaks_v5(client: aiomqtt.Client) -> bool:
    """Whether `client` was made for MQTT 5 (after `connect`: the version the broker took)."""
    paho = client._client  # noqa: SLF001 - aiomqtt does not expose the protocol it was made with
    return bool(paho.protocol == MQTTv5)
