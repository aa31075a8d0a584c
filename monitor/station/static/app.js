// The ward page: tiles for every bed, the ward banner, the bed detail, the commands.
// Everything it shows comes from the station over one WebSocket (monitor/station/server.py);
// the page never names the user on a command: the station stamps the logged-in one.

import { AlarmSound, RANK } from "./alarm-audio.js";
import { sessionChart, sparkline, svg } from "./charts.js";

const $ = (sel, root = document) => root.querySelector(sel);

// Flashing elements are rebuilt as data arrives; a negative delay puts every one of them at
// the same point of its cycle, so a rebuilt element never restarts (and so slows) its flash.
const PERIOD_S = { high: 0.5, medium: 1.6 };
function synced(el, priority) {
  const period = PERIOD_S[priority];
  if (period) el.style.animationDelay = `-${((performance.now() / 1000) % period).toFixed(3)}s`;
  return el;
}

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const state = {
  me: null,
  beds: new Map(),
  link: { connected: false, lost_since: null, alarm: null },
  offset: 0, // station clock minus page clock, seconds
  expected: {},
  staleFactor: 3,
  socketUp: false,
  detail: null, // key of the open bed detail
  pauseCeiling: new Map(), // bed key -> [paused_until, highest rank present when paused]
  sent: new Map(), // request_id -> {bed, cmd, form}
  results: [],
};
const sound = new AlarmSound(window.AudioContext);
// for the browser tests and the benchmark (a command sent this way is checked by the station
// like any other: the role, the user's name, the bed's own validation)
window.vigilStation = { state, sound, send: (bed, body) => send(bed, body), stats: () => stats };

const now = () => Date.now() / 1000 + state.offset;
const MARK = { high: "!!!", medium: "!!", low: "!" };
const WORD = { high: "HIGH", medium: "MEDIUM", low: "LOW" };

function fmtAge(s) {
  if (s < 60) return `${Math.max(0, Math.floor(s))} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function clock(t) {
  if (t === null || t === undefined) return "";
  const d = new Date(t * 1000);
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
}

function fmt(v, digits = 0) {
  return v === null || v === undefined ? "--" : Number(v).toFixed(digits);
}

// ------------------------------------------------------------------ login

async function login(ev) {
  ev.preventDefault();
  const form = ev.target;
  const r = await fetch("/api/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user: form.user.value, password: form.password.value }),
  });
  if (!r.ok) {
    $("#login-error").textContent = (await r.json()).error || "refused";
    return;
  }
  form.password.value = "";
  start();
}

async function logout() {
  await fetch("/api/logout", { method: "POST" });
  location.reload();
}

async function start() {
  const r = await fetch("/api/me");
  if (r.status === 401) {
    document.body.dataset.view = "login";
    return;
  }
  state.me = await r.json();
  document.body.dataset.view = "ward";
  await loadChecklist();
  connect();
}

// ------------------------------------------------------------------ WebSocket

let ws = null;
let lastMessage = 0;

function connect() {
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  ws = new WebSocket(url);
  ws.onopen = () => { state.socketUp = true; };
  ws.onmessage = (ev) => {
    lastMessage = Date.now();
    stats.messages += 1;
    receive(JSON.parse(ev.data));
  };
  ws.onclose = () => {
    state.socketUp = false;
    renderAll();
    setTimeout(() => start(), 1000);
  };
}

function send(bed, body, form = null) {
  if (!ws || ws.readyState !== WebSocket.OPEN) {
    toast(`${bed}: not sent, the station is not connected`, "bad");
    return;
  }
  const tag = Math.random().toString(36).slice(2);
  state.sent.set(tag, { bed, cmd: body.cmd, form });
  ws.send(JSON.stringify({ bed, body, tag }));
}

function receive(m) {
  switch (m.type) {
    case "snapshot":
      state.me = m.me;
      state.offset = m.now - Date.now() / 1000;
      state.expected = m.expected_s;
      state.staleFactor = m.stale_factor;
      state.beds = new Map(m.beds.map((b) => [b.key, b]));
      setLink(m);
      renderAll();
      break;
    case "bed": {
      const before = state.beds.get(m.key);
      state.beds.set(m.key, m.bed);
      noteRendered(before, m.bed);
      // an acknowledgement waiting for the bed is drawn at once: the bed's confirmation may
      // follow within the same frame, and the pending state is still a state of the alarm
      if ((m.bed.active || []).some((a) => a.pending)) renderTile(m.bed);
      schedule(m.key);
      break;
    }
    case "beds":
      // one push of the station: every bed that changed since the last one
      for (const item of m.items) receive(item);
      break;
    case "gone":
      state.beds.delete(m.key);
      renderAll();
      break;
    case "tick":
      state.offset = m.now - Date.now() / 1000;
      setLink(m);
      break;
    case "link":
      setLink(m);
      break;
    case "sent": {
      const s = state.sent.get(m.tag);
      state.sent.delete(m.tag);
      if (s) state.sent.set(m.request_id, s);
      toast(`${m.bed}: ${m.cmd} sent, waiting for the bed`, "info");
      break;
    }
    case "refused": {
      const s = state.sent.get(m.tag);
      state.sent.delete(m.tag);
      if (s && s.form) showFormResult(s.form, false, m.error);
      toast(`${m.bed || ""} ${m.cmd || ""}: REFUSED by the station: ${m.error}`, "bad");
      break;
    }
    case "result": {
      state.results.push(m);
      const s = state.sent.get(m.request_id);
      const r = m.result;
      if (s && s.form) showFormResult(s.form, r.ok, r.ok ? r : r.error);
      if (s) state.sent.delete(m.request_id);
      toast(`${m.bed}: ${m.cmd} by ${m.user}: ${r.ok ? "accepted" : `REFUSED by the bed: ${r.error}`}`, r.ok ? "good" : "bad");
      if (state.detail === m.bed) renderResults();
      break;
    }
    default:
      break;
  }
}

// Changes are drawn once per animation frame, however many arrive in between: a busy ward
// never makes the page fall behind the station.
const dirtyBeds = new Set();
let frame = null;
let probes = [];

function schedule(key) {
  dirtyBeds.add(key);
  if (frame === null) frame = requestAnimationFrame(draw);
}

// what drawing costs this page (bench/station.py prints it)
const stats = { draws: 0, drawMs: 0, tiles: 0, messages: 0 };

function draw() {
  const t0 = performance.now();
  stats.draws += 1;
  stats.tiles += dirtyBeds.size;
  frame = null;
  for (const key of dirtyBeds) {
    const b = state.beds.get(key);
    if (b) renderTile(b);
  }
  if (state.detail && dirtyBeds.has(state.detail)) renderDetailLive();
  dirtyBeds.clear();
  renderBanner();
  stats.drawMs += performance.now() - t0;
  // drawn: the probes of this frame are done (the next frame is when they are on screen)
  const done = probes;
  probes = [];
  if (done.length) {
    requestAnimationFrame(() => {
      const at = Date.now() / 1000;
      window.vigilRendered = window.vigilRendered || [];
      for (const p of done) window.vigilRendered.push({ ...p, at });
    });
  }
}

// Latency probe for bench/station.py: when an alarm first shows, note the page's time.
function noteRendered(before, after) {
  const seen = new Set((before?.active || []).map((a) => a.alarm_id));
  for (const a of after?.active || []) {
    if (!seen.has(a.alarm_id)) probes.push({ key: after.key, code: a.code, alarm_id: a.alarm_id });
  }
}

function setLink(m) {
  const was = state.link.connected;
  state.link = { connected: m.connected, lost_since: m.lost_since, alarm: m.alarm, error: m.error };
  document.body.classList.toggle("broker-lost", !m.connected);
  if (was !== m.connected) renderAll();
}

// ------------------------------------------------------------------ the ward

function bedAlarms(b) {
  const list = [...(b.active || [])];
  list.sort((x, y) => RANK[y.priority] - RANK[x.priority] || x.since - y.since);
  return list;
}

function unacked(b) {
  return bedAlarms(b).filter((a) => a.state === "active");
}

function isOffline(b) {
  return b.status === "offline";
}

function pausedUntil(b) {
  const u = b.session && b.session.audio_paused_until;
  return u && u > now() ? u : null;
}

// The alarm conditions of the station itself, shown first in the banner.
function stationAlarms() {
  const out = [];
  if (!state.link.connected && state.link.lost_since) {
    out.push({ key: "station", code: "STATION_BROKER_LOST", priority: "medium", kind: "technical", since: state.link.lost_since, text: "station lost the ward broker: every bed's data may be out of date" });
  }
  if (!state.socketUp) {
    out.push({ key: "station", code: "STATION_UNREACHABLE", priority: "medium", kind: "technical", since: now(), text: "this page lost the station: reconnecting" });
  }
  for (const b of state.beds.values()) {
    if (isOffline(b) && b.session && b.session.phase !== "none") {
      out.push({ key: b.key, code: "BED_OFFLINE", priority: "medium", kind: "technical", since: b.status_rx, text: `${b.key} OFFLINE during a session` });
    }
  }
  return out;
}

// What the speaker should play: the highest priority of the unacknowledged alarms, a bed's
// audio pause silencing its own alarms except a higher priority than was present when the
// pause began (the new alarm breaks through), and the station's technical alarms.
function soundPriority() {
  let best = 0;
  for (const b of state.beds.values()) {
    if (isOffline(b)) continue;
    const alarms = unacked(b);
    const top = alarms.length ? RANK[alarms[0].priority] : 0;
    const until = pausedUntil(b);
    let ceiling = 0;
    if (until) {
      const seen = state.pauseCeiling.get(b.key);
      if (!seen || seen[0] !== until) state.pauseCeiling.set(b.key, [until, top]);
      ceiling = state.pauseCeiling.get(b.key)[1];
    }
    for (const a of alarms) {
      const r = RANK[a.priority];
      if (!until || r > ceiling) best = Math.max(best, r);
    }
  }
  for (const a of stationAlarms()) best = Math.max(best, RANK[a.priority]);
  return [null, "low", "medium", "high"][best];
}

function renderBanner() {
  const el = $("#banner-alarms");
  const rows = [];
  for (const a of stationAlarms()) rows.push({ ...a, acked: false });
  for (const b of state.beds.values()) {
    for (const a of bedAlarms(b)) {
      rows.push({ key: b.key, code: a.code, priority: a.priority, kind: a.kind, since: a.since, acked: a.state === "acknowledged", text: alarmText(a) });
    }
  }
  rows.sort((x, y) => (x.acked - y.acked) || RANK[y.priority] - RANK[x.priority] || x.since - y.since);
  sound.play(soundPriority());
  // rebuilt only when what it lists changed: numbers arriving every frame leave it alone
  const sig = JSON.stringify([rows.slice(0, 8).map((r) => [r.key, r.code, r.priority, r.acked, r.text]), rows.length]);
  if (el.dataset.sig === sig) return;
  el.dataset.sig = sig;
  el.replaceChildren(
    ...rows.slice(0, 8).map((r) => synced(h("li", { class: `banner-alarm prio-${r.priority}${r.acked ? " acked" : " flashing"}`, "data-priority": r.priority, onclick: () => r.key !== "station" && openDetail(r.key) },
      h("span", { class: "mark" }, MARK[r.priority]), " ", h("b", {}, r.key), " ", WORD[r.priority], " ", r.code, r.acked ? " (acknowledged)" : "", " ", h("span", { class: "banner-text" }, r.text || "")), r.acked ? null : r.priority)),
  );
  $("#banner-count").textContent = rows.length > 8 ? `+${rows.length - 8} more` : "";
}

function alarmText(a) {
  const v = a.value === null || a.value === undefined ? "" : ` ${fmt(a.value)}`;
  const lim = a.limit === null || a.limit === undefined ? "" : ` (limit ${fmt(a.limit)})`;
  return `${a.param || ""}${v}${lim}`.trim();
}

function phaseClock(b) {
  const s = b.session;
  if (!s || s.phase === "none") return "no session";
  const since = now() - (b.session_rx || now());
  if (s.phase === "infusion" && s.infusion_elapsed_s != null) {
    return `infusion min ${Math.floor((s.infusion_elapsed_s + since) / 60) + 1} of 40`;
  }
  if (s.phase === "post" && s.observation_elapsed_s != null) {
    return `observation min ${Math.floor((s.observation_elapsed_s + since) / 60) + 1} of 120`;
  }
  return s.phase === "pre" ? "pre-infusion" : s.phase;
}

// What a vital's cell shows: its value(s), its age on the bed's own clock and whether it is
// stale (a cuff reading is as old as its determination, however recently the station heard of
// it; the bed's clock estimated from its latest samples).
function vitalState(b, params, digits) {
  const vals = params.map((p) => b.vitals[p]);
  const v0 = vals[0];
  if (!v0) return { text: "--", age: "", stale: false };
  const bedNow = Math.max(...Object.values(b.vitals).map((v) => v.t + (now() - v.rx)));
  const age = bedNow - v0.t;
  const expected = (state.expected[params[0]] || 2) * state.staleFactor;
  const stale = age > expected || !state.link.connected;
  const text = vals.map((v) => (v ? fmt(v.value, digits) : "--")).join("/");
  return { text, age: stale ? `STALE ${fmtAge(age)}` : fmtAge(age), stale };
}

const VITALS = [["HR", ["HR"]], ["PR", ["PR"]], ["SpO\u2082", ["SPO2"]], ["NIBP", ["NIBP_SYS", "NIBP_DIA"]]];

// A tile is built once and then updated in place: a number arriving every second changes two
// text nodes, not a tile's worth of elements (bench/station.py measures what drawing costs).
function tileParts(tile, b) {
  if (tile.parts) return tile.parts;
  const parts = {
    patient: h("span", { class: "patient" }),
    paused: h("span", { class: "paused", "data-paused": "0", title: "audio paused", hidden: true }),
    status: h("div"),
    cells: VITALS.map(([label, params]) => {
      const cell = h("div", { class: "vital", "data-param": params[0] },
        h("span", { class: "vlabel" }, label), h("span", { class: "vvalue" }, "--"), h("span", { class: "vage", "data-stale": "0" }));
      return { cell, params, value: cell.children[1], age: cell.children[2] };
    }),
    spark: svg("svg", { class: "spark", viewBox: "0 0 200 30", preserveAspectRatio: "none" }),
    sparkSig: null,
    list: null,
  };
  const head = h("header", { class: "tile-head" },
    h("span", { class: "bed-name" }, b.bed), h("span", { class: "ward-name" }, b.ward), parts.patient, parts.paused);
  parts.list = h("ul", { class: "alarms" });
  tile.replaceChildren(head, parts.status, h("div", { class: "vitals" }, ...parts.cells.map((c) => c.cell)), parts.spark, parts.list);
  tile.parts = parts;
  return parts;
}

function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

function updateTile(tile, b) {
  const parts = tileParts(tile, b);
  const s = b.session;
  setText(parts.patient, (s && s.session ? s.session.patient_id : "") || "\u2014");
  const until = pausedUntil(b);
  parts.paused.hidden = !until;
  parts.paused.dataset.paused = until ? "1" : "0";
  setText(parts.paused, until ? `AUDIO PAUSED \u2298 ${fmtAge(until - now())}` : "");
  // without the broker the station knows nothing new of any bed, whatever it last heard
  const [cls, status, text] = !state.link.connected
    ? ["status-nobroker", "no-broker", "NO DATA: station lost the broker"]
    : isOffline(b)
      ? ["status-offline", "offline", `OFFLINE since ${clock(b.status_rx)}`]
      : ["phase", "", phaseClock(b)];
  parts.status.className = cls;
  if (status) parts.status.dataset.status = status;
  else delete parts.status.dataset.status;
  setText(parts.status, text);
  for (const c of parts.cells) {
    const v = vitalState(b, c.params, 0);
    setText(c.value, v.text);
    setText(c.age, v.age);
    c.age.className = `vage${v.stale ? " stale" : ""}`;
    c.age.dataset.stale = v.stale ? "1" : "0";
    c.cell.classList.toggle("is-stale", v.stale);
  }
  // the trend line moves by a point every 10 s: redrawn when its points or its step changed
  const latest = Math.max(...Object.values(b.vitals).map((v) => v.t), 0);
  const trend = b.trend || {};
  const sparkSig = JSON.stringify([Math.floor(latest / 10), ...["HR", "SPO2"].map((p) => (trend[p] || []).at(-1) || null)]);
  if (parts.sparkSig !== sparkSig) {
    parts.sparkSig = sparkSig;
    sparkline(parts.spark, trend, latest);
  }
}

function alarmLine(b, a) {
  const ack = a.state === "acknowledged";
  const li = h("li", { class: `alarm prio-${a.priority}${ack ? " acked" : " flashing"}`, "data-alarm": a.alarm_id, "data-code": a.code, "data-priority": a.priority },
    h("span", { class: "alarm-text" }, h("span", { class: "mark" }, MARK[a.priority]), " ", h("span", { class: "prio-word" }, WORD[a.priority]), " ", h("b", {}, a.code), " ", alarmText(a)));
  if (!ack) synced(li, a.priority);
  if (a.latched) li.append(latchedMark(a));
  if (ack) {
    li.append(h("span", { class: "ack-state confirmed", "data-ack": "confirmed" }, ` \u2713 ACK ${a.acked_by || ""} ${a.acked_t ? clock(a.acked_t) : ""}`));
  } else if (a.pending) {
    li.append(h("span", { class: "ack-state pending", "data-ack": "pending" }, ` \u2026 ACK pending (${a.pending.user})`));
  } else if (canCommand()) {
    li.append(h("button", { class: "ack-btn", onclick: (ev) => { ev.stopPropagation(); send(b.key, { cmd: "ack", alarm_id: a.alarm_id }); } }, "Acknowledge"));
  }
  return li;
}

// A latched alarm: its condition has ended, it stays until a nurse acknowledges it
// (docs/ALARMS.md "States"). Said in words with a mark, never by colour alone.
function latchedMark(a) {
  return h("span", { class: "latched", "data-latched": "1" }, ` \u2691 LATCHED, condition ended ${a.latched_t ? clock(a.latched_t) : ""}`.trimEnd());
}

function canCommand() {
  return state.me && state.me.role !== "viewer";
}

const drawnAt = new Map(); // bed key -> performance.now() of its last drawing

function renderTile(b) {
  drawnAt.set(b.key, performance.now());
  const grid = $("#ward");
  let tile = grid.querySelector(`[data-bed="${CSS.escape(b.key)}"]`);
  if (!tile) {
    tile = h("section", { class: "tile", "data-bed": b.key, tabindex: 0, onclick: () => openDetail(b.key) });
    synced(tile, "high");
    const after = [...grid.children].find((el) => el.dataset.bed > b.key);
    grid.insertBefore(tile, after || null);
  }
  const alarms = bedAlarms(b);
  const top = unacked(b)[0];
  const offline = isOffline(b);
  tile.className = `tile${top ? ` tile-${top.priority} flashing` : ""}${offline ? " offline" : ""}${state.link.connected ? "" : " no-broker"}`;
  if (tile.dataset.priority !== (top ? top.priority : "")) synced(tile, top ? top.priority : null);
  tile.dataset.priority = top ? top.priority : "";
  updateTile(tile, b);
  // the alarm lines are rebuilt only when the alarms changed: a number arriving every second
  // neither restarts a flash nor moves an Acknowledge button under a nurse's pointer
  // (the list stays in the tile: an element taken out of the page restarts its animation)
  const sig = JSON.stringify([alarms.map((a) => [a.alarm_id, a.state, a.pending, a.acked_by, a.latched, a.latched_t]), canCommand()]);
  if (tile.dataset.sig !== sig) {
    tile.dataset.sig = sig;
    const lines = alarms.slice(0, 3).map((a) => alarmLine(b, a));
    if (alarms.length > 3) lines.push(h("li", { class: "more" }, `+${alarms.length - 3} more`));
    tile.parts.list.replaceChildren(...lines);
  }
}

function renderAll() {
  const grid = $("#ward");
  for (const el of [...grid.children]) if (!state.beds.has(el.dataset.bed)) el.remove();
  for (const b of [...state.beds.values()].sort((x, y) => (x.key < y.key ? -1 : 1))) renderTile(b);
  renderBanner();
  $("#who").textContent = state.me ? `${state.me.name} (${state.me.role})` : "";
  $("#link").textContent = state.link.connected ? "broker connected" : "BROKER LOST";
  $("#link").className = state.link.connected ? "ok" : "bad";
  if (state.detail) renderDetailLive();
}

// ------------------------------------------------------------------ audio arming

function renderArm() {
  const armed = sound.running;
  document.body.classList.toggle("audio-off", !armed);
  $("#arm").hidden = armed;
  $("#audio-state").textContent = armed ? "alarm sound ON" : "alarm sound OFF";
}

// ------------------------------------------------------------------ bed detail

let detailData = null;

async function openDetail(key) {
  state.detail = key;
  document.body.dataset.detail = key;
  $("#detail").hidden = false;
  const [ward, bed] = key.split("/");
  const r = await fetch(`/api/bed/${encodeURIComponent(ward)}/${encodeURIComponent(bed)}`);
  if (!r.ok) return;
  detailData = await r.json();
  renderDetail();
}

function closeDetail() {
  state.detail = null;
  delete document.body.dataset.detail;
  $("#detail").hidden = true;
}

function renderDetailLive() {
  if (!detailData) return;
  const b = state.beds.get(state.detail);
  if (!b) return;
  detailData.bed = b;
  renderDetailHead();
  renderDetailActive();
  renderActions();
}

// The bed's active alarms in its detail, a latched one with its mark and when its condition
// ended (the history below has only events: a condition's end is none).
function renderDetailActive() {
  const b = detailData.bed;
  const alarms = bedAlarms(b);
  const sig = JSON.stringify(alarms.map((a) => [a.alarm_id, a.state, a.latched, a.latched_t, a.acked_by]));
  const list = $("#detail-active");
  if (list.dataset.sig === sig) return;
  list.dataset.sig = sig;
  list.replaceChildren(...(alarms.length ? alarms.map((a) => h("li", { class: `prio-${a.priority}${a.state === "acknowledged" ? " acked" : ""}`, "data-code": a.code, "data-alarm": a.alarm_id },
    h("span", { class: "mark" }, MARK[a.priority]), ` ${WORD[a.priority]} `, h("b", {}, a.code), ` ${alarmText(a)} since ${clock(a.since)}`,
    a.latched ? latchedMark(a) : null,
    a.state === "acknowledged" ? ` \u2713 ACK ${a.acked_by || ""}` : "")) : [h("li", { class: "note" }, "none")]));
}

function renderDetailHead() {
  const b = detailData.bed;
  const s = b.session && b.session.session;
  const [ward, bed] = b.key.split("/");
  $("#detail-title").replaceChildren(...h("span", {},
    h("b", {}, `Bed ${b.bed}`), ` ward ${b.ward} · `, s ? `patient ${s.patient_id}` : "no session", ` · ${phaseClock(b)}`,
    isOffline(b) ? h("span", { class: "status-offline" }, " OFFLINE") : null,
    " ", h("a", { href: `/report/${encodeURIComponent(ward)}/${encodeURIComponent(bed)}`, target: "_blank", id: "report-link" }, "session report")).childNodes);
  const facts = $("#facts");
  const rows = [];
  if (s) {
    rows.push(["weight", `${fmt(s.weight_kg, 1)} kg`], ["concentration", `${fmt(s.concentration_mg_per_ml, 1)} mg/mL`],
      ["dose", `${fmt(s.dose_mg, 1)} mg`], ["pump rate", `${fmt(s.rate_ml_per_h, 1)} mL/h`],
      ["opened", `${clock(s.opened_t)} by ${s.opened_by || "?"}`],
      ["infusion", s.infusion_start_t ? `${clock(s.infusion_start_t)} – ${s.infusion_stop_t ? clock(s.infusion_stop_t) : "running"}` : "not started"]);
    for (const o of s.overrides || []) rows.push(["override", `${o.what} by ${o.user} at ${clock(o.t)}: ${o.reason}`]);
    for (const sc of s.scores || []) rows.push(["score", `${sc.scale} ${sc.value}`]);
  }
  const bl = b.session && b.session.baseline;
  if (bl) rows.push(["baseline", `BP ${fmt(bl.sys0)}/${fmt(bl.dia0)}, HR ${fmt(bl.hr0)}, SpO2 ${fmt(bl.spo2_0)}`]);
  const course = b.session && b.session.course;
  if (course) rows.push(["course", `infusion ${course.infusion_number} of ${course.of}${(course.flags || []).length ? `; ${course.flags.join(", ")}` : ""}`]);
  facts.replaceChildren(...rows.map(([k, v]) => h("div", { class: "fact" }, h("dt", {}, k), h("dd", {}, v))));
}

function renderDetail() {
  renderDetailHead();
  $("#detail-active").dataset.sig = "";
  renderDetailActive();
  sessionChart($("#chart"), detailData);
  const tbody = $("#history tbody");
  tbody.replaceChildren(...detailData.alarms.map((a) => h("tr", { class: `prio-${a.priority}` },
    h("td", {}, clock(a.t)), h("td", {}, `${MARK[a.priority]} ${WORD[a.priority]}`), h("td", {}, a.code),
    h("td", {}, a.state), h("td", {}, a.user || ""), h("td", {}, a.message || ""))));
  renderActions();
  renderResults();
}

function renderResults() {
  const list = $("#results");
  const mine = state.results.filter((r) => r.bed === state.detail).slice(-6).reverse();
  list.replaceChildren(...mine.map((r) => h("li", { class: r.result.ok ? "good" : "bad" },
    `${clock(r.rx)} ${r.cmd} by ${r.user}: `, r.result.ok ? "accepted" : `REFUSED: ${r.result.error}`)));
}

function actionButton(label, body, enabled = true) {
  return h("button", { class: "action", "data-cmd": body.cmd, disabled: !enabled || !canCommand(), onclick: () => send(state.detail, body) }, label);
}

function renderActions() {
  const b = detailData.bed;
  const phase = b.session ? b.session.phase : "none";
  const el = $("#actions");
  const items = [
    h("button", { class: "action", "data-cmd": "open_session", disabled: phase !== "none" || !canCommand(), onclick: openChecklist }, "Open session…"),
    actionButton("Start infusion", { cmd: "start_infusion" }, phase === "pre"),
    actionButton("Stop infusion", { cmd: "stop_infusion" }, phase === "infusion"),
    actionButton("Discharge", { cmd: "discharge" }, phase === "post"),
    actionButton("Pause audio 120 s", { cmd: "audio_pause" }),
  ];
  const score = h("form", { class: "inline", id: "score-form", onsubmit: (ev) => { ev.preventDefault(); send(state.detail, { cmd: "record_score", scale: ev.target.scale.value, value: Number(ev.target.value.value) }); } },
    h("select", { name: "scale" }, ...["CAPS-5", "PCL-5", "IES-R", "CADSS"].map((s) => h("option", {}, s))),
    h("input", { name: "value", type: "number", min: 0, max: 200, required: true, size: 4 }),
    h("button", { disabled: !canCommand() }, "Record score"));
  items.push(score);
  if (state.me && state.me.role === "clinician") {
    const ov = h("form", { class: "inline", id: "override-form", onsubmit: (ev) => { ev.preventDefault(); send(state.detail, { cmd: "override", what: ev.target.what.value, reason: ev.target.reason.value }); } },
      h("select", { name: "what" }, ...Object.keys(checklistInfo?.overrides || {}).map((w) => h("option", {}, w))),
      h("input", { name: "reason", placeholder: "reason (required)", required: true, minlength: 3 }),
      h("button", {}, "Override"));
    items.push(ov);
  } else {
    items.push(h("span", { class: "note" }, "overrides: clinician only"));
  }
  el.replaceChildren(...items);
}

// ------------------------------------------------------------------ checklist form

let checklistInfo = null;

async function loadChecklist() {
  const r = await fetch("/api/checklist");
  if (r.ok) checklistInfo = await r.json();
}

function openChecklist() {
  const dlg = $("#checklist");
  const form = $("#checklist-form");
  const items = $("#checklist-items");
  items.replaceChildren(...checklistInfo.items.map((it) => h("fieldset", { class: `item item-${it.kind}`, "data-item": it.name },
    h("legend", {}, it.name.replaceAll("_", " ")), h("p", { class: "meaning" }, it.meaning),
    h("label", {}, h("input", { type: "radio", name: it.name, value: "yes" }), " yes"),
    h("label", {}, h("input", { type: "radio", name: it.name, value: "no" }), " no"))));
  form.reset();
  showFormResult(form, null, "");
  dlg.hidden = false;
}

function submitChecklist(ev) {
  ev.preventDefault();
  const form = ev.target;
  const checklist = {};
  const missing = [];
  for (const it of checklistInfo.items) {
    const v = form.querySelector(`input[name="${it.name}"]:checked`);
    if (!v) missing.push(it.name);
    else checklist[it.name] = v.value === "yes";
  }
  if (missing.length) {
    showFormResult(form, false, `answer every item (an unanswered item is not a "no"): ${missing.join(", ")}`);
    return;
  }
  send(state.detail, {
    cmd: "open_session",
    patient_id: form.patient_id.value,
    weight_kg: Number(form.weight_kg.value),
    concentration_mg_per_ml: Number(form.concentration.value),
    checklist,
  }, form);
  showFormResult(form, null, "sent, waiting for the bed…");
}

function showFormResult(form, ok, what) {
  const out = form.querySelector(".form-result");
  if (!out) return;
  out.className = `form-result ${ok === true ? "good" : ok === false ? "bad" : ""}`;
  if (ok === true) {
    out.replaceChildren(h("b", {}, "Session open. Second person, check: "),
      h("span", { "data-dose": "" }, `dose ${fmt(what.dose_mg, 1)} mg`), ", ",
      h("span", { "data-rate": "" }, `pump rate ${fmt(what.rate_ml_per_h, 1)} mL/h`));
  } else {
    out.textContent = ok === false ? `REFUSED: ${what}` : what;
  }
}

// ------------------------------------------------------------------ toasts

function toast(text, kind) {
  const el = h("li", { class: `toast ${kind}` }, text);
  $("#toasts").append(el);
  setTimeout(() => el.remove(), 8000);
}

// ------------------------------------------------------------------ start

document.addEventListener("DOMContentLoaded", () => {
  $("#login-form").addEventListener("submit", login);
  $("#logout").addEventListener("click", logout);
  $("#arm").addEventListener("click", async () => { await sound.arm(); renderArm(); renderBanner(); });
  $("#audio-state").addEventListener("click", async () => { await sound.arm(); renderArm(); });
  $("#detail-close").addEventListener("click", closeDetail);
  $("#checklist-form").addEventListener("submit", submitChecklist);
  $("#checklist-close").addEventListener("click", () => { $("#checklist").hidden = true; });
  sound.onchange(renderArm);
  renderArm();
  // ages, countdowns and phase clocks move every second, whatever the station sends
  setInterval(() => {
    if (state.me) {
      // ages, countdowns and clocks: redraw the tiles no message has redrawn this last second
      const stale = performance.now() - 900;
      for (const b of state.beds.values()) if ((drawnAt.get(b.key) || 0) < stale) schedule(b.key);
      renderArm();
    }
    if (state.socketUp && Date.now() - lastMessage > 5000 && ws) ws.close();
  }, 1000);
  start();
});
