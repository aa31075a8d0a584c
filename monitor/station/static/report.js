// The printable session report of one bed, drawn from the station's history.
import { sessionChart } from "./charts.js";

function iso(t) {
  const d = new Date(t * 1000);
  const off = -d.getTimezoneOffset();
  const pad = (n) => String(Math.floor(Math.abs(n))).padStart(2, "0");
  const local = new Date(d.getTime() + off * 60000).toISOString().slice(0, 19);
  return `${local}${off >= 0 ? "+" : "-"}${pad(off / 60)}:${pad(off % 60)}`;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement("td");
    td.textContent = c ?? "";
    tr.append(td);
  }
  return tr;
}

async function main() {
  const [, , ward, bed] = location.pathname.split("/");
  const r = await fetch(`/api/bed/${ward}/${bed}`);
  if (!r.ok) {
    document.querySelector("#title").textContent = `Session report: ${r.status === 401 ? "log in on the station first" : "no such bed"}`;
    return;
  }
  const d = await r.json();
  const s = d.bed.session && d.bed.session.session;
  document.querySelector("#title").textContent = `Session report: bed ${d.bed.key}${s ? `, patient ${s.patient_id}` : ""} (made ${d.time})`;
  sessionChart(document.querySelector("#chart"), d);
  const facts = document.querySelector("#facts");
  const add = (k, v) => { const dt = document.createElement("dt"); dt.textContent = k; const dd = document.createElement("dd"); dd.textContent = v; facts.append(dt, dd); };
  if (s) {
    add("session", s.session_id);
    add("dose", `${s.dose_mg} mg at ${s.rate_ml_per_h} mL/h (${s.weight_kg} kg, ${s.concentration_mg_per_ml} mg/mL)`);
    add("opened", `${iso(s.opened_t)} by ${s.opened_by}`);
    if (s.infusion_start_t) add("infusion", `${iso(s.infusion_start_t)} to ${s.infusion_stop_t ? iso(s.infusion_stop_t) : "running"}`);
    for (const o of s.overrides || []) add("override", `${o.what} by ${o.user} at ${iso(o.t)}: ${o.reason}`);
  }
  document.querySelector("#history tbody").replaceChildren(...d.alarms.map((a) => row([iso(a.t), a.priority, a.code, a.state, a.user, a.message])));
}

main();
