"""The central station under a ward's load: alarm published -> rendered in 4 open pages.

    .venv/bin/python bench/station.py [--beds 64] [--alarms 120] [--pages 4]
    .venv/bin/python bench/station.py --screenshots docs/figures    # the docs' two pictures

A real broker (mosquitto, tests/helpers.py), `vigil station` in its own process, and `--beds`
simulated beds, each publishing what a bed publishes (retained status and session, HR, PR and
SpO2 once a second) from one publisher process. Headless Debian chromium opens `--pages` pages,
logged in. Every 0.5 s an alarm is raised on a bed (its retained `…/alarms/active` and its
`…/alarms` event); each page notes, in an animation frame after drawing it, the wall time it
showed (`window.vigilRendered`, monitor/station/static/app.js). Printed: published -> rendered
p50/p99 over all pages, beside the bare broker round trip of the same messages to a plain
subscriber; the station process's CPU share of one core and its RSS over the run.

Aim (issue 15): p99 <= 250 ms, <= 10 % of one core.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from playwright.sync_api import Page, sync_playwright

from monitor.station.server import hash_password
from tests.helpers import BrokerProcess, free_port
from tests.monitor.station.browser_rig import CHROMIUM, CHROMIUM_ARGS

ROOT = Path(__file__).resolve().parent.parent

PASSWORD = "bench-password"  # noqa: S105 - a throwaway account
PATIENTS = ["K-1041", "K-1187", "K-2210", "K-0932", "K-3305", "K-1550", "K-2794", "K-0611"]


def _client(host: str, port: int, name: str) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name)
    c.connect(host, port)
    c.loop_start()
    return c


def _session(bed: int, now: float) -> dict[str, Any]:
    """A retained `…/session` as a bed in the middle of its infusion publishes it."""
    opened = now - 900 - 60 * (bed % 30)
    start = opened + 600
    weight = 60.0 + bed % 40
    return {
        "t": now,
        "phase": "infusion",
        "session": {
            "session_id": f"s{bed}",
            "patient_id": PATIENTS[bed % len(PATIENTS)] + f"{bed:02d}",
            "weight_kg": weight,
            "concentration_mg_per_ml": 10.0,
            "dose_mg": 0.5 * weight,
            "rate_ml_per_h": 0.5 * weight / 10.0 * 1.5,
            "opened_t": opened,
            "opened_by": "anna",
            "infusion_start_t": start,
        },
        "baseline": {"t": start, "sys0": 124.0, "dia0": 78.0, "hr0": 72.0, "spo2_0": 98.0},
        "audio_paused_until": None,
        "infusion_elapsed_s": now - start,
    }


def publisher(host: str, port: int, beds: int, stop: Any, backlog_s: float) -> None:
    """The ward's beds: retained status and session, then HR, PR and SpO2 once a second."""
    c = _client(host, port, f"bench-beds-{uuid.uuid4().hex[:6]}")
    rng = random.Random(7)  # noqa: S311 - noise, not secrets
    now = time.time()
    for b in range(beds):
        prefix = f"vigil/w1/b{b + 1:02d}"
        status = {"status": "online", "ward": "w1", "bed": f"b{b + 1:02d}", "version": "bench"}
        c.publish(f"{prefix}/status", json.dumps(status), qos=1, retain=True)
        c.publish(f"{prefix}/session", json.dumps(_session(b, now)), qos=1, retain=True)
        c.publish(f"{prefix}/alarms/active", "[]", qos=1, retain=True)
    # a past half hour for the first bed, so that its detail has trends to draw
    for k in range(int(backlog_s // 5)):
        t = now - backlog_s + 5 * k
        hr = 72 + 8 * (k / (backlog_s / 5)) + rng.gauss(0, 1.5)
        spo2 = 97.5 - (3 if 200 < k < 230 else 0) + rng.gauss(0, 0.4)
        rows = [("HR", hr), ("PR", hr + rng.gauss(0, 1)), ("SPO2", min(spo2, 100.0))]
        if k % 60 == 0:
            sys_ = 124 + 30 * k / (backlog_s / 5)
            rows += [("NIBP_SYS", sys_), ("NIBP_DIA", sys_ * 0.62), ("NIBP_MEAN", sys_ * 0.75)]
        for param, v in rows:
            sample = {"t": t, "param": param, "value": round(v, 1), "valid": True, "device_id": "m"}
            c.publish("vigil/w1/b01/vitals", json.dumps(sample), qos=0)
    while not stop.is_set():
        t = time.time()
        for b in range(beds):
            prefix = f"vigil/w1/b{b + 1:02d}"
            base = 64 + (b * 7) % 40
            for param, v in (
                ("HR", base + rng.gauss(0, 2)),
                ("PR", base + rng.gauss(0, 2)),
                ("SPO2", 94 + (b % 6) + rng.gauss(0, 0.5)),
            ):
                sample = {
                    "t": t,
                    "param": param,
                    "value": round(min(v, 100.0) if param == "SPO2" else v, 1),
                    "valid": True,
                    "device_id": "m",
                }
                c.publish(f"{prefix}/vitals", json.dumps(sample), qos=0)
            if b % 16 == 0 and int(t) % 300 == 0:
                sys_ = 128 + b % 30
                for param, v in (
                    ("NIBP_SYS", sys_),
                    ("NIBP_DIA", sys_ * 0.62),
                    ("NIBP_MEAN", sys_ * 0.75),
                ):
                    c.publish(
                        f"{prefix}/vitals",
                        json.dumps(
                            {"t": t, "param": param, "value": v, "valid": True, "device_id": "m"}
                        ),
                        qos=0,
                    )
        stop.wait(max(0.0, 1.0 - (time.time() - t)))
    c.loop_stop()
    c.disconnect()


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _pct(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]
        if len(values) > 1
        else values[0]
    )


def _alarm(
    bed: int, code: str, priority: str, t: float, param: str, value: float, limit: float
) -> tuple[str, str, str]:
    alarm_id = uuid.uuid4().hex
    active = [
        {
            "alarm_id": alarm_id,
            "code": code,
            "priority": priority,
            "kind": "physiological",
            "state": "active",
            "since": t,
            "param": param,
            "value": value,
            "limit": limit,
        }
    ]
    event = {
        "t": t,
        "code": code,
        "priority": priority,
        "kind": "physiological",
        "state": "active",
        "param": param,
        "value": value,
        "limit": limit,
        "phase": "infusion",
        "message": f"{param} {value:g} vs {limit:g}",
        "bed": f"w1/b{bed:02d}",
        "alarm_id": alarm_id,
        "session_id": f"s{bed - 1}",
        "seq": 1,
    }
    return alarm_id, json.dumps(active), json.dumps(event)


def _login(page: Page, base: str) -> None:
    r = page.context.request.post(
        f"{base}/api/login", data={"user": "anna", "password": PASSWORD}, headers={"Origin": base}
    )
    assert r.ok, r.text()
    page.goto(base + "/")
    page.wait_for_selector('[data-bed="w1/b01"]')


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--beds", type=int, default=64)
    ap.add_argument("--alarms", type=int, default=120)
    ap.add_argument("--pages", type=int, default=4)
    ap.add_argument("--screenshots", type=Path, default=None, help="write the docs' figures here")
    args = ap.parse_args()
    shots = args.screenshots is not None
    beds = 32 if shots else args.beds
    with tempfile.TemporaryDirectory() as tmp, BrokerProcess(Path(tmp) / "broker") as broker:
        port = free_port()
        config = Path(tmp) / "station.toml"
        config.write_text(
            f'[station]\nlisten = "127.0.0.1:{port}"\ndatabase = "{tmp}/station.sqlite"\n'
            f'[broker]\nurl = "{broker.url}"\n'
            f'[[users]]\nname = "anna"\nrole = "nurse"\n'
            f'password_hash = "{hash_password(PASSWORD)}"\n'
        )
        station = subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", "station", "--config", str(config)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        assert station.stdout is not None
        line = ""
        while not line.startswith("vigil station: http"):
            line = station.stdout.readline()
            assert line, "the station stopped before printing its URL"
        base = line.split()[-1].rstrip("/")
        stop = multiprocessing.Event()
        feed = multiprocessing.Process(
            target=publisher, args=(broker.host, broker.port, beds, stop, 1800.0 if shots else 0.0)
        )
        feed.start()
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                if shots:
                    _screenshots(browser, base, broker, args.screenshots)
                    return 0
                pages = []
                for _ in range(args.pages):
                    page = browser.new_context(viewport={"width": 1920, "height": 1080}).new_page()
                    _login(page, base)
                    pages.append(page)
                time.sleep(3)  # the ward settles: every bed's first vitals in
                _measure(pages, broker, station.pid, args.alarms, beds)
                browser.close()
        finally:
            stop.set()
            feed.join(10)
            station.terminate()
            station.wait(10)
    return 0


def _measure(pages: list[Page], broker: BrokerProcess, pid: int, alarms: int, beds: int) -> None:
    pub = _client(broker.host, broker.port, "bench-alarms")
    seen: dict[str, float] = {}
    got = threading.Event()

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        seen[json.loads(msg.payload)["alarm_id"]] = time.time()
        got.set()

    probe = _client(broker.host, broker.port, "bench-probe")
    probe.on_message = on_message
    probe.subscribe("vigil/w1/+/alarms", qos=1)
    time.sleep(0.5)
    published: dict[str, float] = {}
    cpu0, wall0 = _cpu_s(pid), time.monotonic()
    rss = []
    rng = random.Random(3)  # noqa: S311 - which bed, not secrets
    for i in range(alarms):
        bed = rng.randrange(1, beds + 1)
        alarm_id, active, event = _alarm(bed, "DESAT", "medium", time.time(), "SPO2", 89.0, 92.0)
        published[alarm_id] = time.time()
        pub.publish(f"vigil/w1/b{bed:02d}/alarms/active", active, qos=1, retain=True)
        pub.publish(f"vigil/w1/b{bed:02d}/alarms", event, qos=1)
        time.sleep(0.5)
        if i % 10 == 0:
            rss.append(_rss_mb(pid))
    time.sleep(2)
    cpu1, wall1 = _cpu_s(pid), time.monotonic()
    rendered: list[float] = []
    missing = 0
    for page in pages:
        notes = {n["alarm_id"]: n["at"] for n in page.evaluate("window.vigilRendered || []")}
        for alarm_id, t in published.items():
            if alarm_id in notes:
                rendered.append((notes[alarm_id] - t) * 1000)
            else:
                missing += 1
    broker_rt = [(seen[a] - t) * 1000 for a, t in published.items() if a in seen]
    drawing = [page.evaluate("window.vigilStation.stats()") for page in pages]
    print(f"station bench: {beds} beds at 1 Hz (HR, PR, SpO2), {len(pages)} pages, {alarms} alarms")
    print(
        f"  published -> rendered (in the page): p50 {_pct(rendered, 50):.1f} ms, "
        f"p99 {_pct(rendered, 99):.1f} ms, max {max(rendered):.1f} ms "
        f"({len(rendered)} renderings, {missing} missing)"
    )
    print(
        f"  bare broker round trip:              p50 {_pct(broker_rt, 50):.1f} ms, "
        f"p99 {_pct(broker_rt, 99):.1f} ms"
    )
    for i, d in enumerate(drawing):
        print(
            f"  page {i + 1}: {d['messages']} messages, {d['draws']} frames drawn, "
            f"{d['tiles']} tiles, {d['drawMs']:.0f} ms drawing in all"
        )
    print(
        f"  station CPU: {100 * (cpu1 - cpu0) / (wall1 - wall0):.1f} % of one core; "
        f"RSS {max(rss):.0f} MB"
    )
    pub.loop_stop()
    probe.loop_stop()


def _screenshots(browser: Any, base: str, broker: BrokerProcess, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    page = browser.new_context(viewport={"width": 1920, "height": 1080}).new_page()
    page.add_init_script(
        "window.AudioContext = class { constructor() { this.state = 'running'; } "
        "createPeriodicWave() { return {}; } resume() { return Promise.resolve(); } };"
    )
    _login(page, base)
    page.click("#arm")
    time.sleep(4)
    pub = _client(broker.host, broker.port, "bench-shots")
    now = time.time()
    ids = {}
    for bed, code, prio, param, value, limit in (
        (3, "BP_CRISIS", "high", "NIBP_SYS", 204.0, 200.0),
        (7, "DESAT", "medium", "SPO2", 89.0, 92.0),
        (12, "TACHY", "medium", "HR", 128.0, 120.0),
        (20, "SYMPATHOMIMETIC_SURGE", "low", "NIBP_SYS", 152.0, 149.0),
        (1, "BP_HIGH", "medium", "NIBP_SYS", 182.0, 180.0),
    ):
        ids[bed], active, event = _alarm(bed, code, prio, now - 40, param, value, limit)
        pub.publish(f"vigil/w1/b{bed:02d}/alarms/active", active, qos=1, retain=True)
        pub.publish(f"vigil/w1/b{bed:02d}/alarms", event, qos=1)
    # a latched alarm whose condition has ended: it stays, marked, until acknowledged
    _, active, event = _alarm(15, "DESAT_CRITICAL", "high", now - 95, "SPO2", 84.0, 85.0)
    latched = json.loads(active)
    latched[0].update(latched=True, latched_t=now - 30)
    pub.publish("vigil/w1/b15/alarms/active", json.dumps(latched), qos=1, retain=True)
    pub.publish("vigil/w1/b15/alarms", event, qos=1)
    pub.publish(
        "vigil/w1/b30/status",
        json.dumps({"status": "offline", "ward": "w1", "bed": "b30"}),
        qos=1,
        retain=True,
    )
    time.sleep(1.5)
    # one acknowledged by the nurse logged in; the bed's confirmation as a bed sends it
    page.locator('[data-bed="w1/b07"] .ack-btn').click()
    time.sleep(0.5)
    _, active, event = _alarm(7, "DESAT", "medium", now - 40, "SPO2", 89.0, 92.0)
    active_list = json.loads(active)
    active_list[0].update(alarm_id=ids[7], state="acknowledged")
    ack = json.loads(event)
    ack.update(alarm_id=ids[7], state="acknowledged", user="anna", t=time.time())
    pub.publish("vigil/w1/b07/alarms", json.dumps(ack), qos=1)
    pub.publish("vigil/w1/b07/alarms/active", json.dumps(active_list), qos=1, retain=True)
    time.sleep(4)
    page.screenshot(path=str(out / "station-overview.png"))
    page.click('[data-bed="w1/b01"]')
    time.sleep(2)
    page.screenshot(path=str(out / "station-detail.png"))
    pub.loop_stop()


if __name__ == "__main__":
    sys.exit(main())
