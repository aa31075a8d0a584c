"""An MQTT broker inside the Vigil process, for `vigil demo` and for tests without mosquitto.

`embedded_broker()` runs amqtt (0.12) on one loopback TCP listener: anonymous clients allowed, no
websockets, no TLS, no `$SYS` topics, nothing written to disk. It is a convenience for a machine
with nothing installed; a ward runs a real broker such as mosquitto.

What amqtt 0.12.1 does not do, measured against mosquitto:
- MQTT 5: refused at CONNECT (protocol level 5 is an "invalid protocol"), so no message expiry,
  user properties, will delay or session expiry. aiomqtt 2.5 speaks MQTT 3.1.1 by default, which
  works; a client created with `protocol=ProtocolVersion.V5` cannot connect.
- Offline queues: every session is "anonymous" when anonymous access is allowed, and amqtt
  discards anonymous sessions at disconnect, so `clean_session=False` keeps nothing: QoS 1
  messages published while a subscriber is away are lost to it.
QoS 1, retained messages and the Last Will (sent when a client drops without DISCONNECT) work
(tests/monitor/test_embedded_broker.py).

Four amqtt 0.12.1 defects are corrected here (`_Broker`), each guarded by a test:
- a connection dropped before its CONNECT (a port probe) is left open, and surfaces later as a
  ResourceWarning, an error under pytest;
- every connecting client is sent, at QoS 0, the retained messages of every topic filter that
  any client holds, subscribed or not. Here a client gets retained messages on SUBSCRIBE only,
  at its granted QoS (and on CONNECT only for filters its resumed session holds);
- an MQTT 5 CONNECT is decoded as if it were 3.1.1 before its level is checked, so one with a
  will (the daemon's) gets no answer and its client times out; here it is refused at once with
  CONNACK "unacceptable protocol version", and a client set to "auto" goes on with 3.1.1;
- a message is delivered at the QoS its subscriber was granted, whatever the QoS it was
  published with: a QoS 0 vital sign reaches a QoS 1 subscriber as QoS 1. Here it goes at the
  lower of the two, as MQTT 3.1.1 §3.8.4 requires.

`python -m monitor.embedded_broker [--host H] [--port P]` runs it until SIGTERM or SIGINT and
prints its URL on stdout (the test fixture uses this when mosquitto is absent).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import logging
import signal
import sys
from typing import TYPE_CHECKING, Any, Final

from amqtt.adapters import StreamReaderAdapter, StreamWriterAdapter
from amqtt.broker import Broker

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

__all__ = ["embedded_broker", "main"]


# amqtt ships no type information, so its Broker is `Any` to mypy.
class _Broker(Broker):  # type: ignore[misc]
    """amqtt's broker with the fixes the module docstring lists.

    They override private amqtt 0.12 methods; pyproject pins amqtt below 0.13 and the tests in
    tests/monitor/test_embedded_broker.py fail if any fix stops taking effect.
    """

    async def stream_connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener_name: str
    ) -> None:
        try:
            head = await _connect_head(reader)
            if _is_mqtt5(head):
                # amqtt 0.12.1 decodes an MQTT 5 CONNECT as 3.1.1 before it checks the level:
                # with a will, the v5 properties leave it waiting for bytes that never come, and
                # the client times out instead of hearing "version refused" and trying 3.1.1.
                writer.write(_CONNACK_UNACCEPTABLE_VERSION)
                await writer.drain()
                return
            await self._client_connected(
                listener_name, _ReplayReader(reader, head), StreamWriterAdapter(writer)
            )
        except (EOFError, ConnectionError):
            return  # gone before its CONNECT was read: nothing to serve
        finally:
            # amqtt 0.12.1 `_client_connected` returns without closing the connection when the
            # client sends no (or a truncated) CONNECT, e.g. a port probe; the socket then
            # surfaces later as a ResourceWarning. Closing a closed StreamWriter is a no-op.
            writer.close()

    async def _handle_message_delivery(
        self, client_session: Any, handler: Any, wait_deliver: asyncio.Future[Any]
    ) -> bool:
        message = wait_deliver.result()
        token = _PUBLISHED_QOS.set(getattr(message, "qos", None))
        try:
            delivered = await super()._handle_message_delivery(
                client_session, handler, wait_deliver
            )
            return bool(delivered)
        finally:
            _PUBLISHED_QOS.reset(token)

    async def _broadcast_message(
        self,
        session: Any,
        topic: str | None,
        data: bytes | bytearray | None,
        force_qos: int | None = None,
    ) -> None:
        # a Last Will carries its own QoS (force_qos); a client's PUBLISH the QoS noted above
        cap = force_qos if force_qos is not None else _PUBLISHED_QOS.get()
        if cap is None:
            await super()._broadcast_message(session, topic, data, force_qos)
            return
        fields = {"session": session, "topic": topic, "data": data}
        await self._broadcast_queue.put(_CappedBroadcast(fields, cap))

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Any
    ) -> None:
        # amqtt 0.12.1 `_handle_client_session` calls this for every filter in the broker's
        # subscription table with QoS 0 when any client connects; on SUBSCRIBE it calls it for
        # the filter just added. Serving only filters this session holds, at its granted QoS,
        # keeps the SUBSCRIBE path and makes the CONNECT path resume a persistent session only.
        topic_filter, _ = subscription
        granted = [
            qos
            for holder, qos in self._subscriptions.get(topic_filter, [])
            if holder.client_id == session.client_id
        ]
        if granted:
            await super()._publish_retained_messages_for_subscription(
                (topic_filter, granted[0]), session
            )


# CONNACK, return code 1 "unacceptable protocol version" (MQTT 3.1.1 §3.2.2.3), which a 3.1.1
# server answers a CONNECT of another level with (§3.1.2.2); paho reports it as reason 0x84.
_CONNACK_UNACCEPTABLE_VERSION: Final = b"\x20\x02\x00\x01"
_CONNECT: Final = 1  # packet type of CONNECT (high nibble of its first byte)
_MQTT_NAME: Final = b"\x00\x04MQTT"


async def _connect_head(reader: asyncio.StreamReader) -> bytes:
    """The first bytes of a connection, up to a CONNECT's protocol level byte.

    Less when the first byte is not a CONNECT or the protocol name is not "MQTT": amqtt then
    refuses the connection itself.

    Raises:
        asyncio.IncompleteReadError: the connection closed first.
    """
    head = await reader.readexactly(1)
    if head[0] >> 4 != _CONNECT:
        return head
    for _ in range(4):  # the remaining length: 1 to 4 bytes, high bit set on all but the last
        byte = await reader.readexactly(1)
        head += byte
        if not byte[0] & 0x80:
            break
    name = await reader.readexactly(len(_MQTT_NAME))
    head += name
    if name != _MQTT_NAME:
        return head
    return head + await reader.readexactly(1)


def _is_mqtt5(head: bytes) -> bool:
    return (
        head[0] >> 4 == _CONNECT and head[-len(_MQTT_NAME) - 1 : -1] == _MQTT_NAME and head[-1] == 5
    )


class _ReplayReader(StreamReaderAdapter):  # type: ignore[misc]
    """amqtt's stream reader, serving `head` (already read by `_connect_head`) first."""

    def __init__(self, reader: asyncio.StreamReader, head: bytes) -> None:
        super().__init__(reader)
        self._head = head

    async def read(self, n: int = -1) -> bytes:
        head, self._head = self._head, b""
        if n == -1:
            # "whatever is there": what is left of the head is enough
            return head or bytes(await super().read(-1))
        if len(head) >= n:
            self._head = head[n:]
            return head[:n]
        return head + bytes(await super().read(n - len(head)))


# The QoS a client published the message being handled with, set by `_handle_message_delivery`
# in the task serving that client and read by `_broadcast_message` below it in the same task.
_PUBLISHED_QOS: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "vigil_published_qos", default=None
)


class _CappedBroadcast(dict[str, Any]):
    """A broadcast whose delivery QoS is at most the QoS it was published with.

    amqtt 0.12.1 `_run_broadcast` delivers at ``broadcast.get("qos", granted)``: the granted QoS
    of each subscription unless the broadcast forces one. Answering that lookup with the lower
    of the two delivers each message at the QoS MQTT 3.1.1 §3.8.4 gives it.
    """

    def __init__(self, fields: dict[str, Any], cap: int) -> None:
        super().__init__(fields)
        self.cap = cap

    def get(self, key: str, default: Any = None) -> Any:
        if key == "qos" and isinstance(default, int):
            return min(self.cap, default)
        return super().get(key, default)


def _config(host: str, port: int) -> dict[str, Any]:
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{_bracket(host)}:{port}"}},
        # Listing the plugins replaces amqtt's defaults: no $SYS plugin (it warns that it needs
        # psutil), no packet/event loggers, no entry-point loading (deprecated, warns).
        "plugins": {
            "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
        },
    }


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _bound_port(broker: Any) -> int:
    # amqtt has no public accessor for the address it bound; port 0 needs the real one.
    server = broker._servers["default"].instance  # noqa: SLF001
    return int(server.sockets[0].getsockname()[1])


@contextlib.asynccontextmanager
async def embedded_broker(host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Run an MQTT 3.1.1 broker on `host:port` for the duration of the block.

    Args:
        host: address to listen on; keep it loopback (no authentication, no TLS).
        port: TCP port; 0 lets the OS pick a free one.

    Yields:
        The broker's URL, `mqtt://HOST:PORT`, with the port actually bound.

    Raises:
        amqtt.errors.BrokerError: the listener could not be opened (e.g. port in use).

    On exit the broker disconnects its clients, closes the listener and awaits its own tasks;
    retained messages and sessions are forgotten.
    """
    broker = _Broker(_config(host, port))
    await broker.start()
    try:
        yield f"mqtt://{_bracket(host)}:{_bound_port(broker)}"
    finally:
        await broker.shutdown()


async def _serve(host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with embedded_broker(host, port) as url:
        sys.stdout.write(f"{url}\n")
        sys.stdout.flush()
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the embedded broker until SIGTERM or SIGINT; print its URL once it listens."""
    parser = argparse.ArgumentParser(
        prog="python -m monitor.embedded_broker", description="embedded MQTT broker (amqtt)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="TCP port, 0 for any (default 0)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(_serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
