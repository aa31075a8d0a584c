"""`vigil station`: the nurses' central station, one aiohttp process for the whole ward.

Why aiohttp (docs/station.md "Design"): it is one well-kept library that serves HTTP and
WebSockets in the asyncio loop the MQTT client already runs in, with no ASGI server and no
second framework; the station's whole server side is one `Station` context manager owning one
TaskGroup:

- `station.ward`: the ward link (`monitor.supervisor.supervise` with backoff, connecting through
  `drivers/mqtt/client.py` like every client), subscribed to
  every bed's `status`, `session`, `alarms/active`, `alarms`, `cmd/result` and `vitals`
  (`monitor.station.ward.TOPICS`), publishing the commands the pages send;
- `station.push`: every 50 ms the beds whose alarms, status or session changed go to every
  open page as JSON over the WebSocket; beds whose numbers changed once a second, with a
  `tick` (the station's clock, the link state), so that a page
  that hears nothing knows the station is gone;
- `station.keep`: writes the batched samples to the station's SQLite file once a second and
  prunes history older than `keep_days`.

A command from a page carries only what the nurse chose; the station adds the request id and
the *authenticated* user's name, checks the role (docs/station.md "Roles"), validates it with
the bed's own command models (`monitor.wire.decode_command`) and publishes it. The page
never names a user.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import logging
import secrets
import signal
import sys
import time
import uuid
import zlib
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, Final, Self

import aiomqtt
import argon2
from aiohttp import WSMsgType, web

from drivers.mqtt import client as mqtt_client
from kernel.configfile import ConfigError
from kernel.settings import Endpoint
from kernel.tasks import TaskGroupService, raise_if_cancelled
from kernel.vocabulary import ABSOLUTE_CONTRAINDICATIONS, RELATIVE_CONTRAINDICATIONS, iso8601
from monitor.authority import command_topic
from monitor.commands import OVERRIDE_MEANINGS, Checklist, CommandRejectedError
from monitor.logs import setup_logging
from monitor.metrics import parse_listen
from monitor.station.settings import StationConfig, User, load_station_config
from monitor.station.store import StationStore
from monitor.station.ward import EXPECTED_INTERVAL_S, TOPICS, WardState
from monitor.supervisor import Backoff, LinkState, LinkStatus, supervise
from monitor.ward import broker_client
from monitor.wire import decode_command, encode_command

__all__ = ["BROKER_LOST", "COOKIE", "Station", "hash_password", "station_main"]

log = logging.getLogger("vigil.station")

COOKIE: Final = "vigil_station"
# the station's own technical alarm (docs/ARCHITECTURE.md "Alarm event JSON"): it has lost the
# ward broker, so every tile may be out of date; IEC 60601-1-8 6.11.2 asks a distributed alarm
# system to raise a technical alarm where communication failed
BROKER_LOST: Final = "STATION_BROKER_LOST"
_STATIC: Final = Path(str(resources.files("monitor.station") / "static"))
_PUSH_S: Final = 0.05
_TICK_S: Final = 1.0
_SLOTS: Final = round(_TICK_S / _PUSH_S)
_FLUSH_S: Final = 1.0
_PRUNE_S: Final = 3600.0
_PUBLISH_S: Final = 10.0
_PAGE_QUEUE: Final = 2000
# who may send what (docs/station.md "Roles"): a viewer nothing, a nurse all but overrides
_NURSE_MAY: Final = frozenset(
    {
        "ack",
        "audio_pause",
        "open_session",
        "start_infusion",
        "stop_infusion",
        "record_score",
        "discharge",
    }
)
_ALLOWED: Final[dict[str, frozenset[str]]] = {
    "viewer": frozenset(),
    "nurse": _NURSE_MAY,
    "clinician": _NURSE_MAY | {"override"},
}

_hasher = argon2.PasswordHasher()
# verified against when the user name is unknown, so a wrong name costs as long as a wrong
# password and does not tell who has an account
_DUMMY_HASH: Final = _hasher.hash(secrets.token_hex(16))


def hash_password(password: str) -> str:
    """An argon2id hash of `password` for the `[[users]]` table (argon2-cffi's defaults)."""
    return _hasher.hash(password)


class _Page:
    """One open WebSocket, who is logged in on it, and what waits to be sent to it."""

    def __init__(self, ws: web.WebSocketResponse, user: User) -> None:
        self.ws = ws
        self.user = user
        # bounded: a page that stops reading is dropped, never allowed to hold the station
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=_PAGE_QUEUE)


class Station(TaskGroupService):
    """The station's server: `async with Station(config) as s` serves until the block ends."""

    def __init__(self, config: StationConfig, *, now: Callable[[], float] = time.time) -> None:
        self.config = config
        self._now = now
        self.link = LinkStatus("station.ward")
        self.store: StationStore | None = None
        self.ward: WardState | None = None
        self.pages: set[_Page] = set()
        self._dirty: set[str] = set()
        self._dirty_vitals: set[str] = set()
        # set when an alarm, status or session changed: the push loop sends it at once instead
        # of at its next 50 ms beat (bench/station.py measured the wait in the p99)
        self._wake = asyncio.Event()
        self._outgoing: asyncio.Queue[tuple[str, bytes, str]] = asyncio.Queue()
        self._group: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self._ever_connected = False
        self.broker_lost_since: float | None = None
        self.address: tuple[str, int] | None = None
        self.link.listeners.append(self._on_link)

    # ------------------------------------------------------------------ lifetime

    async def __aenter__(self) -> Self:
        s = self.config.station
        self.store = StationStore(s.database)
        self.ward = WardState(self.store, prefix=s.prefix)
        app = web.Application()
        app.add_routes(
            [
                web.get("/", self._index),
                web.get("/report/{ward}/{bed}", self._report_page),
                web.get("/api/me", self._me),
                web.post("/api/login", self._login),
                web.post("/api/logout", self._logout),
                web.get("/api/checklist", self._checklist),
                web.get("/api/bed/{ward}/{bed}", self._bed_detail),
                web.get("/ws", self._websocket),
                web.static("/static", _STATIC, append_version=False),
            ]
        )
        app.on_response_prepare.append(self._headers)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        host, port = parse_listen(s.listen)
        site = web.TCPSite(self._runner, host, port)
        try:
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            self.store.close()
            raise
        server = site._server  # noqa: SLF001 - aiohttp keeps the bound socket (port 0) there
        sockets = getattr(server, "sockets", None) or ()
        self.address = sockets[0].getsockname()[:2] if sockets else (host, port)
        tg = await self._open_group()
        self._tasks = [
            tg.create_task(
                supervise(
                    self.link,
                    self._serve_ward,
                    errors=(OSError, TimeoutError, aiomqtt.MqttError),
                    backoff=Backoff(base=s.retry_base_s, cap=s.retry_max_s),
                    now=self._now,
                    stable_s=5.0,
                ),
                name="station.ward",
            ),
            tg.create_task(self._push_loop(), name="station.push"),
            tg.create_task(self._keep_loop(), name="station.keep"),
        ]
        log.info("event=station_started url=%s broker=%s", self.url, self.config.broker.url)
        return self

    async def _release(self) -> None:
        assert self._runner is not None
        for page in list(self.pages):
            with contextlib.suppress(Exception):
                await page.ws.close()
        await self._runner.cleanup()
        if self.store is not None:
            self.store.close()

    @property
    def url(self) -> str:
        """Where the page is served (`http://host:port/`)."""
        host, port = self.address or parse_listen(self.config.station.listen)
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104 - a name to show
        return f"http://{shown}:{port}/"

    def _w(self) -> WardState:
        assert self.ward is not None, "use the station as `async with`"
        return self.ward

    def _s(self) -> StationStore:
        assert self.store is not None, "use the station as `async with`"
        return self.store

    # ------------------------------------------------------------------ the ward link

    def _client(self, protocol: aiomqtt.ProtocolVersion, endpoint: Endpoint) -> aiomqtt.Client:
        b = self.config.broker
        s = self.config.station
        port = (self.address or (None, 0))[1]
        return broker_client(
            b,
            protocol,
            endpoint,
            identifier=b.client_id or f"vigil-station-{s.ward or 'all'}-{port}",
            # a clean session: what the station missed while away it reads from the retained
            # topics; alarm history stays complete in each bed's journal
            session_expiry_s=0,
            timeout=s.connect_timeout_s,
        )

    async def _serve_ward(self, connected: Callable[[], None]) -> None:
        s = self.config.station
        ward = s.ward or "+"
        async with mqtt_client.connect(
            self.config.broker.protocol, self.config.broker.endpoints, self._client
        ) as client:
            for what, qos in TOPICS:
                await client.subscribe(f"{s.prefix}/{ward}/+/{what}", qos=qos, timeout=_PUBLISH_S)
                raise_if_cancelled()
            connected()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._receive(client), name="station.ward.receive")
                tg.create_task(self._publish(client), name="station.ward.publish")

    async def _receive(self, client: aiomqtt.Client) -> None:
        ward = self._w()
        async for message in client.messages:
            payload = message.payload
            data = payload if isinstance(payload, bytes) else str(payload).encode()
            topic = str(message.topic)
            changed = ward.handle(topic, data, self._now())
            # an alarm, a status, a session change goes to the pages with the next push; the
            # numbers of a bed once a second (they come about once a second anyway)
            if topic.endswith("/vitals"):
                self._dirty_vitals |= changed
            elif changed:
                self._dirty |= changed
                self._wake.set()
            if topic.endswith("/cmd/result") and changed:
                self._broadcast({"type": "result", **ward.results[-1]})

    async def _publish(self, client: aiomqtt.Client) -> None:
        while True:
            topic, payload, request_id = await self._outgoing.get()
            try:
                await client.publish(topic, payload, qos=1, timeout=_PUBLISH_S)
            except aiomqtt.MqttError as exc:
                bed = self._w().send_failed(request_id, str(exc), self._now())
                if bed:
                    self._dirty.add(bed)
                    self._broadcast({"type": "result", **self._w().results[-1]})
                raise
            raise_if_cancelled()

    def _on_link(self, status: LinkStatus) -> None:
        now = self._now()
        if status.state is LinkState.CONNECTED:
            self._ever_connected = True
            if self.broker_lost_since is not None:
                self._station_alarm("cleared", now)
            self.broker_lost_since = None
        elif status.state is LinkState.BACKING_OFF and self.broker_lost_since is None:
            self.broker_lost_since = now
            self._station_alarm("active", now)
        self._broadcast(self._link_message())

    def _station_alarm(self, state: str, now: float) -> None:
        event = {
            "t": now,
            "code": BROKER_LOST,
            "priority": "medium",
            "kind": "technical",
            "state": state,
            "phase": "none",
            "message": f"the station lost the ward broker: {self.link.last_error}",
            "bed": "station",
        }
        log.warning("event=station_alarm code=%s state=%s", BROKER_LOST, state)
        if self.store is not None:
            self.store.add_alarm_event("station", now, event)

    def _link_message(self) -> dict[str, Any]:
        return {
            "type": "link",
            "connected": self.link.state is LinkState.CONNECTED,
            "lost_since": self.broker_lost_since,
            "error": self.link.last_error,
            "alarm": None if self.broker_lost_since is None else BROKER_LOST,
        }

    # ------------------------------------------------------------------ pushing to pages

    async def _push_loop(self) -> None:
        last_tick = 0.0
        slot = 0
        beat = time.monotonic()
        while True:
            # the 50 ms beat for the numbers, or at once for an alarm, status or session
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, beat + _PUSH_S - time.monotonic())):
                    await self._wake.wait()
            # the rest of the messages read in the same turn of the loop (a bed's active list
            # and its alarm event come together) go out in the same push
            await asyncio.sleep(0)
            self._wake.clear()
            mono = time.monotonic()
            if mono >= beat + _PUSH_S:
                beat = mono
                # numbers: each bed in its own 50 ms slot of the second, so that a ward's worth
                # of redrawn tiles is spread over the second instead of landing in one frame
                slot += 1
                due = {
                    k
                    for k in self._dirty_vitals
                    if zlib.crc32(k.encode()) % _SLOTS == slot % _SLOTS
                }
                self._dirty |= due
                self._dirty_vitals -= due
            tick = mono - last_tick >= _TICK_S
            if self._dirty:
                dirty, self._dirty = self._dirty, set()
                self._dirty_vitals -= dirty
                ward = self._w()
                # one WebSocket message per push however many beds changed: encoded once for
                # every page, one frame and one `onmessage` per page instead of one per bed
                self._broadcast(
                    {
                        "type": "beds",
                        "items": [
                            {"type": "bed", "key": key, "bed": view}
                            if (view := ward.view(key)) is not None
                            else {"type": "gone", "key": key}
                            for key in sorted(dirty)
                        ],
                    }
                )
            if tick:
                last_tick = mono
                self._broadcast({**self._link_message(), "type": "tick", "now": self._now()})

    async def _keep_loop(self) -> None:
        last_prune = 0.0
        while True:
            await asyncio.sleep(_FLUSH_S)
            store = self._s()
            store.flush()
            mono = time.monotonic()
            if mono - last_prune >= _PRUNE_S:
                last_prune = mono
                store.prune(self._now() - self.config.station.keep_days * 86400)

    def _broadcast(self, message: dict[str, Any]) -> None:
        if not self.pages:
            return
        text = json.dumps(message)
        for page in list(self.pages):
            try:
                page.queue.put_nowait(text)
            except asyncio.QueueFull:
                log.warning("event=station_page_dropped user=%s reason=slow", page.user.name)
                self.pages.discard(page)

    @staticmethod
    async def _writer(page: _Page) -> None:
        while True:
            text = await page.queue.get()
            async with asyncio.timeout(_PUBLISH_S):
                await page.ws.send_str(text)

    def snapshot(self, user: User) -> dict[str, Any]:
        """The first message on a new WebSocket: the whole ward and who is logged in."""
        ward = self._w()
        return {
            **self._link_message(),
            "type": "snapshot",
            "now": self._now(),
            "me": {"name": user.name, "role": user.role, "full_name": user.full_name},
            "beds": [v for k in sorted(ward.beds) if (v := ward.view(k)) is not None],
            "expected_s": EXPECTED_INTERVAL_S,
            "stale_factor": self.config.station.stale_factor,
            "results": list(ward.results)[-10:],
        }

    # ------------------------------------------------------------------ HTTP: auth

    async def _headers(self, _: web.Request, response: web.StreamResponse) -> None:
        # the page is served by the station alone: no framing, no third-party scripts
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
            "style-src 'self'; script-src 'self'; frame-ancestors 'none'",
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")

    def _origin_ok(self, request: web.Request) -> bool:
        """A browser's Origin is its page's; only the station's own and the configured ones."""
        origin = request.headers.get("Origin")
        if origin is None:
            return False
        own = f"{request.scheme}://{request.host}"
        return origin == own or origin in self.config.station.origins

    def _user(self, request: web.Request) -> User | None:
        token = request.cookies.get(COOKIE)
        if not token:
            return None
        name = self._s().login_user(token, self._now())
        return None if name is None else self.config.user(name)

    async def _index(self, _: web.Request) -> web.StreamResponse:
        return web.FileResponse(_STATIC / "index.html")

    async def _report_page(self, _: web.Request) -> web.StreamResponse:
        return web.FileResponse(_STATIC / "report.html")

    async def _me(self, request: web.Request) -> web.Response:
        user = self._user(request)
        if user is None:
            return web.json_response({"error": "not logged in"}, status=401)
        return web.json_response({"name": user.name, "role": user.role})

    async def _login(self, request: web.Request) -> web.Response:
        if not self._origin_ok(request):
            return web.json_response({"error": "origin not allowed"}, status=403)
        try:
            body = await request.json()
            name, password = str(body["user"]), str(body["password"])
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": "give user and password"}, status=400)
        user = self.config.user(name)
        try:
            # argon2 costs tens of milliseconds of CPU: off the loop, which serves the alarms
            ok: bool = await asyncio.to_thread(
                _hasher.verify, user.password_hash if user else _DUMMY_HASH, password
            )
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            ok = False
        if not ok or user is None:
            log.warning("event=station_login_refused user=%r", name[:64])
            return web.json_response({"error": "wrong user or password"}, status=401)
        token = secrets.token_urlsafe(32)
        hours = self.config.station.session_hours
        self._s().add_login(token, user.name, self._now() + hours * 3600)
        log.info("event=station_login user=%s role=%s", user.name, user.role)
        response = web.json_response({"name": user.name, "role": user.role})
        response.set_cookie(
            COOKIE,
            token,
            max_age=int(hours * 3600),
            httponly=True,
            secure=self.config.station.secure_cookies,
            samesite="Strict",
            path="/",
        )
        return response

    async def _logout(self, request: web.Request) -> web.Response:
        if not self._origin_ok(request):
            return web.json_response({"error": "origin not allowed"}, status=403)
        token = request.cookies.get(COOKIE)
        if token:
            self._s().drop_login(token)
        response = web.json_response({"ok": True})
        response.del_cookie(COOKIE, path="/")
        return response

    # ------------------------------------------------------------------ HTTP: data

    async def _checklist(self, request: web.Request) -> web.Response:
        if self._user(request) is None:
            return web.json_response({"error": "not logged in"}, status=401)
        # from the bed's own model, so the form asks exactly what the bed checks
        items = [
            {
                "name": name,
                "meaning": str(info.description),
                "kind": "absolute"
                if name in ABSOLUTE_CONTRAINDICATIONS
                else "relative"
                if name in RELATIVE_CONTRAINDICATIONS
                else "note",
            }
            for name, info in Checklist.model_fields.items()
        ]
        return web.json_response({"items": items, "overrides": OVERRIDE_MEANINGS})

    async def _bed_detail(self, request: web.Request) -> web.Response:
        if self._user(request) is None:
            return web.json_response({"error": "not logged in"}, status=401)
        key = f"{request.match_info['ward']}/{request.match_info['bed']}"
        ward = self._w()
        view = ward.view(key)
        if view is None:
            return web.json_response({"error": f"no bed {key}"}, status=404)
        bed = ward.beds[key]
        info = bed.session.session if bed.session is not None else None
        now = self._now()
        latest = max((t for t, _, _ in bed.vitals.values()), default=now)
        store = self._s()
        if info is not None and info.opened_t is not None:
            since = info.opened_t
        else:  # no session: the last two hours the station heard
            since = max(store.first_sample(key, latest - 7200) or latest - 600, latest - 7200)
        return web.json_response(
            {
                "bed": view,
                "since": since,
                "until": latest,
                "samples": store.samples(key, since, latest + 1),
                "alarms": store.alarm_events(
                    key, session_id=info.session_id if info is not None else None
                ),
                "now": now,
                "time": iso8601(now),
            }
        )

    # ------------------------------------------------------------------ WebSocket

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if not self._origin_ok(request):
            log.warning("event=station_ws_refused origin=%r", request.headers.get("Origin"))
            return web.json_response({"error": "origin not allowed"}, status=403)
        user = self._user(request)
        if user is None:
            return web.json_response({"error": "not logged in"}, status=401)
        ws = web.WebSocketResponse(heartbeat=10.0, max_msg_size=64 * 1024)
        await ws.prepare(request)
        page = _Page(ws, user)
        page.queue.put_nowait(json.dumps(self.snapshot(user)))
        self.pages.add(page)
        writer = asyncio.create_task(self._writer(page), name="station.page.writer")
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    page.queue.put_nowait(json.dumps(self._from_page(page, msg.data)))
                if writer.done() or page not in self.pages:
                    break  # it failed to write, or was too slow: the page reconnects
        finally:
            self.pages.discard(page)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, TimeoutError):
                await writer
            raise_if_cancelled()
        return ws

    def _from_page(self, page: _Page, text: str) -> dict[str, Any]:
        try:
            data = json.loads(text)
            bed = str(data["bed"])
            body = dict(data["body"])
            tag = str(data.get("tag", ""))
        except (ValueError, KeyError, TypeError):
            return {"type": "refused", "error": "expected {bed, body}"}
        return {"tag": tag, **self.command(page.user, bed, body)}

    def command(self, user: User, bed: str, body: dict[str, Any]) -> dict[str, Any]:
        """Send `body` to `bed` as `user`; the page's reply (`sent`, or `refused` and why)."""
        ward = self._w()
        name = str(body.get("cmd"))
        if name not in _ALLOWED[user.role]:
            why = (
                "a viewer cannot send commands"
                if user.role == "viewer"
                else f"{name}: only a clinician may"
                if name == "override"
                else f"{name}: not a command the station sends"
            )
            log.warning("event=station_cmd_refused user=%s cmd=%s reason=role", user.name, name)
            return {"type": "refused", "bed": bed, "cmd": name, "error": why}
        if bed not in ward.beds:
            return {"type": "refused", "bed": bed, "cmd": name, "error": f"no bed {bed}"}
        # the name is the logged-in user's, whatever the page put there
        command = {**body, "request_id": uuid.uuid4().hex, "user": user.name}
        try:
            # the bed's own validation (monitor/wire.py): a bad form never leaves the station
            payload = encode_command(decode_command(json.dumps(command)))
        except CommandRejectedError as exc:
            return {"type": "refused", "bed": bed, "cmd": name, "error": exc.reason}
        if self.link.state is not LinkState.CONNECTED:
            return {"type": "refused", "bed": bed, "cmd": name, "error": "no ward broker"}
        ward.sent(bed, command, self._now())
        self._outgoing.put_nowait(
            # under the station's broker login, which the bed records as the principal and
            # the ACL lets only this station write (monitor/authority.py)
            (
                command_topic(f"{self.config.station.prefix}/{bed}", self.config.broker.username),
                payload,
                command["request_id"],
            )
        )
        # at once, not with the next push: every page shows the ack pending before the bed's
        # confirmation can arrive (at least one broker round trip later)
        view = ward.view(bed)
        if view is not None:
            self._broadcast({"type": "bed", "key": bed, "bed": view})
        log.info(
            "event=station_cmd user=%s bed=%s cmd=%s request_id=%s",
            user.name,
            bed,
            name,
            command["request_id"],
        )
        return {"type": "sent", "bed": bed, "cmd": name, "request_id": command["request_id"]}


async def _serve_until_signalled(config: StationConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Station(config) as station:
        print(f"vigil station: {station.url}", flush=True)  # noqa: T201 - the CLI's one line
        await stop.wait()


def station_main(args: argparse.Namespace) -> int:
    """`vigil station`: serve the ward's page until SIGTERM or SIGINT."""
    setup_logging()
    if args.hash_password:
        password = (
            sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass()
        )
        print(hash_password(password))  # noqa: T201 - the hash is the output
        return 0
    try:
        config = load_station_config(args.config, listen=args.listen, broker_url=args.broker)
    except ConfigError as exc:
        for p in exc.problems:
            print(p, file=sys.stderr)  # noqa: T201
        return 1
    if not config.users:
        print(  # noqa: T201
            "vigil station: the config has no [[users]]: nobody could log in", file=sys.stderr
        )
        return 1
    try:
        asyncio.run(_serve_until_signalled(config))
    except OSError as exc:
        print(f"vigil station: cannot listen on {config.station.listen}: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    return 0
