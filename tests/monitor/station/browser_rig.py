"""The station's browser tests' rig: a broker, real `vigil run` beds fed by an MQTT monitor, the
station in a thread, and helpers to drive and measure the page (tests/monitor/station/conftest.py
makes its fixtures of them)."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from playwright.sync_api import Browser, BrowserContext, Page, expect

from monitor.station.server import Station, hash_password
from monitor.station.settings import load_station_config
from tests.helpers import BrokerProcess, free_port, write_bed_config

ROOT = Path(__file__).resolve().parents[3]
USERS = {"anna": "nurse", "ben": "nurse", "vic": "viewer", "cleo": "clinician"}
PASSWORD = "correct horse battery staple"  # noqa: S105 - a test account's
WAIT_MS = 20_000
# The system's Chromium (the tests' and bench/station.py's), and the flags it needs here: its
# background connections are refused, many at a time, without them
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# a loaded CI machine: conditions are waited on, never slept for
expect.set_options(timeout=WAIT_MS)

# a stub AudioContext that records each pulse the page schedules: start, stop, fundamental,
# the periodic wave's harmonics and the gain envelope. It starts `suspended`, as a browser's
# does before a user gesture, and `resume()` makes it `running`.
AUDIO_STUB = """
window.__audio = { pulses: [], contexts: [] };
class StubParam {
  constructor(rec) { this.rec = rec; this.value = 0; }
  setValueAtTime(v, t) { this.rec.push(["set", v, t]); }
  linearRampToValueAtTime(v, t) { this.rec.push(["ramp", v, t]); }
}
class StubContext extends EventTarget {
  constructor() {
    super(); this.state = "suspended"; this.destination = {}; this.onstatechange = null;
    this.t0 = performance.now(); window.__audio.contexts.push(this);
  }
  get currentTime() { return (performance.now() - this.t0) / 1000; }
  _set(s) {
    this.state = s; const e = new Event("statechange");
    if (this.onstatechange) this.onstatechange(e); this.dispatchEvent(e);
  }
  resume() { this._set("running"); return Promise.resolve(); }
  suspend() { this._set("suspended"); return Promise.resolve(); }
  createPeriodicWave(real, imag) { return { real: Array.from(real), imag: Array.from(imag) }; }
  createOscillator() {
    const p = { wave: null, freq: [], gain: null, start: null, stop: null };
    window.__audio.pulses.push(p);
    return { frequency: new StubParam(p.freq), setPeriodicWave(w) { p.wave = w; },
             connect(g) { p.gain = g.rec; }, start(t) { p.start = t; }, stop(t) { p.stop = t; } };
  }
  createGain() { const rec = []; return { rec, gain: new StubParam(rec), connect() {} }; }
}
window.AudioContext = StubContext;
"""

# Measures a flashing element in the page: its computed colour sampled every animation frame
# for `ms`; the on/off transitions give the frequency, the on samples the duty cycle.
# The element is looked up each frame: the page rebuilds a tile's alarm lines as data arrives.
MEASURE_FLASH = """async ([sel, prop, ms]) => {
  const samples = [];
  const t0 = performance.now();
  await new Promise((done) => {
    const step = (t) => {
      const el = document.querySelector(sel);
      if (el) samples.push([t, getComputedStyle(el)[prop]]);
      if (t - t0 < ms) requestAnimationFrame(step); else done();
    };
    requestAnimationFrame(step);
  });
  return samples;
}"""


class Feed:
    """The beds' MQTT monitors: HR, PR and SpO2 once a second; cuff readings on demand."""

    def __init__(self, broker: BrokerProcess, beds: list[str]) -> None:
        self.values: dict[str, dict[str, float]] = {
            b: {"HR": 72.0, "PR": 72.0, "SPO2": 97.0} for b in beds
        }
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="station-test-feed")
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feed", daemon=True)
        self._thread.start()

    def _publish(self, bed: str, rows: list[tuple[str, float]], t: float) -> None:
        samples = [
            {"t": t, "param": p, "value": v, "valid": True, "device_id": f"mon-{bed}"}
            for p, v in rows
        ]
        self.client.publish(f"monitors/{bed}/samples", json.dumps(samples), qos=0)

    def _run(self) -> None:
        while not self._stop.wait(1.0 - time.time() % 1.0):
            t = float(math.floor(time.time()))
            for bed, values in list(self.values.items()):
                self._publish(bed, list(values.items()), t)

    def determination(self, bed: str, sys_: float, dia: float) -> None:
        """One cuff determination: its three rows share one time."""
        mean = round((sys_ + 2 * dia) / 3)
        self._publish(
            bed, [("NIBP_SYS", sys_), ("NIBP_DIA", dia), ("NIBP_MEAN", mean)], time.time()
        )

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.client.loop_stop()
        self.client.disconnect()


class StationThread:
    """The station in its own thread and event loop; `restart()` is a stop and a start."""

    def __init__(self, config_path: Path) -> None:
        self.config = load_station_config(config_path)
        self.station: Station | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self.error: BaseException | None = None

    def start(self) -> None:
        self._ready.clear()
        self._thread = threading.Thread(target=self._main, name="station", daemon=True)
        self._thread.start()
        assert self._ready.wait(15), f"the station did not start: {self.error!r}"
        assert self.error is None, self.error

    def _main(self) -> None:
        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            async with Station(self.config) as station:
                self.station = station
                self._ready.set()
                await self._stop.wait()

        try:
            asyncio.run(serve())
        except BaseException as exc:  # noqa: BLE001 - reported by start() and stop()
            self.error = exc
            self._ready.set()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(15)
        assert self.error is None, self.error

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def url(self) -> str:
        assert self.station is not None
        return self.station.url.rstrip("/")


class Ward:
    """Everything the module shares."""

    def __init__(self, root: Path, beds: tuple[str, ...] = ("b1", "b2")) -> None:
        self.broker = BrokerProcess(root / "broker")
        self.names = beds
        self.beds: dict[str, subprocess.Popen[bytes]] = {}
        self.root = root
        self.feed: Feed | None = None
        self.station: StationThread | None = None

    def start(self) -> None:
        self.broker.start()
        for bed in self.names:
            folder = self.root / bed
            folder.mkdir()
            config = write_bed_config(
                folder / "bed.toml",
                self.broker,
                driver=(
                    f'kind = "mqtt"\ndevice_id = "mon-{bed}"\ntopic = "monitors/{bed}/samples"\n'
                ),
            )
            config.write_text(config.read_text().replace('bed = "b1"', f'bed = "{bed}"'))
            with (folder / "bed.log").open("wb") as log:
                self.beds[bed] = subprocess.Popen(
                    [sys.executable, "-m", "monitor.cli", "run", "--config", str(config)],
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
        users = "".join(
            f'[[users]]\nname = "{n}"\nrole = "{r}"\npassword_hash = "{hash_password(PASSWORD)}"\n'
            for n, r in USERS.items()
        )
        port = free_port()
        station_toml = self.root / "station.toml"
        station_toml.write_text(
            f'[station]\nlisten = "127.0.0.1:{port}"\ndatabase = "{self.root}/station.sqlite"\n'
            f'secure_cookies = true\n[broker]\nurl = "{self.broker.url}"\n{users}'
        )
        self.station = StationThread(station_toml)
        self.station.start()
        self.feed = Feed(self.broker, list(self.beds))

    def stop(self) -> None:
        if self.feed is not None:
            self.feed.close()
        for p in self.beds.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.beds.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.station is not None:
            self.station.stop()
        self.broker.stop()


def browser_context(chromium: Browser, ward: Ward, user: str | None) -> BrowserContext:
    context = chromium.new_context(viewport={"width": 1920, "height": 1080})
    context.add_init_script(AUDIO_STUB)
    if user is not None:
        assert ward.station is not None
        r = context.request.post(
            f"{ward.station.url}/api/login",
            data={"user": user, "password": PASSWORD},
            headers={"Origin": ward.station.url},
        )
        assert r.ok, r.text()
    return context


def collect_errors(errors: list[str], user: str) -> Any:
    def on_error(error: object) -> None:
        errors.append(f"{user}: {error}")

    return on_error


def tile(page: Page, bed: str) -> Any:
    return page.locator(f'[data-bed="w1/{bed}"]')


def flash(page: Page, selector: str, prop: str, ms: int) -> tuple[float, float, set[str]]:
    """(frequency Hz, duty cycle, colours seen) of a flashing element, measured in the page.

    Robust to a loaded machine's dropped frames: the period is the median time between
    successive switches to the "on" colour (a missed phase doubles one interval, not the
    median); the duty cycle weighs each sample by the time to the next, leaving out gaps of
    more than 100 ms.
    """
    samples = page.evaluate(MEASURE_FLASH, [selector, prop, ms])
    colours = [c for _, c in samples]
    values = sorted(set(colours))
    assert len(values) == 2, f"expected two colours, saw {values}"
    on = brighter(values)
    ons = [samples[i][0] for i in range(1, len(samples)) if colours[i] == on != colours[i - 1]]
    assert len(ons) >= 3, samples
    period_ms = statistics.median(b - a for a, b in itertools.pairwise(ons))
    lit = total = 0.0
    for (t0, c0), (t1, _) in itertools.pairwise(samples):
        if t1 - t0 <= 100:
            total += t1 - t0
            lit += (t1 - t0) if c0 == on else 0.0
    return 1000 / period_ms, lit / total, set(values)


def rgb(css: str) -> tuple[int, ...]:
    return tuple(int(float(x)) for x in css[css.index("(") + 1 : css.index(")")].split(",")[:3])


def brighter(values: list[str]) -> str:
    return max(values, key=lambda c: sum(rgb(c)))


def bursts(pulses: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Pulses grouped into bursts: a gap over 2 s starts a new one (every inter-burst interval
    of the standard is at least 2.5 s, every gap inside a burst at most 1.3 s)."""
    bursts: list[list[dict[str, Any]]] = []
    for p in sorted(pulses, key=lambda p: p["start"]):
        if not bursts or p["start"] - bursts[-1][-1]["stop"] > 2.0:
            bursts.append([])
        bursts[-1].append(p)
    return bursts


def gaps(burst: list[dict[str, Any]]) -> list[float]:
    return [b["start"] - a["stop"] for a, b in itertools.pairwise(burst)]
