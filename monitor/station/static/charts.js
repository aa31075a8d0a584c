// SVG drawing for the tiles' short trend lines and the bed detail's session trends.

const NS = "http://www.w3.org/2000/svg";

export function svg(tag, attrs = {}, parent = null) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (parent) parent.appendChild(el);
  return el;
}

function path(points, x, y) {
  let d = "";
  let pen = false;
  for (const [t, v] of points) {
    if (v === null || v === undefined) { pen = false; continue; }
    d += `${pen ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`;
    pen = true;
  }
  return d;
}

// A tile's sparkline: HR and SpO2 over the last 10 minutes, each on its own scale.
export function sparkline(el, trend, now) {
  el.replaceChildren();
  const w = 200;
  const h = 30;
  svg("rect", { x: 0, y: 0, width: w, height: h, class: "spark-bg" }, el);
  const t0 = now - 600;
  const x = (t) => ((t - t0) / 600) * w;
  const series = [["HR", 40, 160, "spark-hr"], ["SPO2", 80, 100, "spark-spo2"]];
  for (const [param, lo, hi, cls] of series) {
    const pts = (trend[param] || []).filter(([t]) => t >= t0);
    const y = (v) => h - ((Math.min(Math.max(v, lo), hi) - lo) / (hi - lo)) * h;
    svg("path", { d: path(pts, x, y), class: cls }, el);
  }
}

const PHASE_CLASS = { pre: "phase-pre", infusion: "phase-infusion", post: "phase-post" };

// The bed detail's trends: HR/PR and SpO2 lines, NIBP determinations as bars, the session's
// phases shaded, and every alarm activation marked by a tick coloured by priority.
export function sessionChart(el, detail) {
  el.replaceChildren();
  const w = Math.max(el.clientWidth || 1100, 600);
  const h = 360;
  const m = { l: 44, r: 44, t: 18, b: 24 };
  el.setAttribute("viewBox", `0 0 ${w} ${h}`);
  const since = detail.since;
  const until = Math.max(detail.until, since + 60);
  const x = (t) => m.l + ((t - since) / (until - since)) * (w - m.l - m.r);
  const yL = (v) => h - m.b - ((v - 30) / (200 - 30)) * (h - m.t - m.b); // HR, PR, NIBP
  const yR = (v) => h - m.b - ((v - 70) / (100 - 70)) * (h - m.t - m.b); // SpO2
  svg("rect", { x: m.l, y: m.t, width: w - m.l - m.r, height: h - m.t - m.b, class: "chart-bg" }, el);
  const s = detail.bed.session && detail.bed.session.session;
  if (s) {
    const spans = [
      ["pre", s.opened_t, s.infusion_start_t ?? until],
      ["infusion", s.infusion_start_t, s.infusion_stop_t ?? until],
      ["post", s.infusion_stop_t, until],
    ];
    for (const [phase, a, b] of spans) {
      if (a === null || a === undefined) continue;
      const r = svg("rect", { x: x(Math.max(a, since)), y: m.t, width: Math.max(x(b) - x(Math.max(a, since)), 0), height: h - m.t - m.b, class: PHASE_CLASS[phase] }, el);
      svg("title", {}, r).textContent = phase;
      const label = svg("text", { x: x(Math.max(a, since)) + 4, y: m.t + 12, class: "chart-phase" }, el);
      label.textContent = phase;
    }
  }
  for (const v of [60, 100, 140, 180]) {
    svg("line", { x1: m.l, x2: w - m.r, y1: yL(v), y2: yL(v), class: "grid" }, el);
    svg("text", { x: m.l - 6, y: yL(v) + 4, class: "axis axis-l" }, el).textContent = v;
  }
  for (const v of [80, 90, 100]) {
    svg("text", { x: w - m.r + 6, y: yR(v) + 4, class: "axis axis-r" }, el).textContent = `${v}%`;
  }
  const sm = detail.samples;
  svg("path", { d: path(sm.HR || [], x, yL), class: "line-hr" }, el);
  svg("path", { d: path(sm.PR || [], x, yL), class: "line-pr" }, el);
  svg("path", { d: path(sm.SPO2 || [], x, yR), class: "line-spo2" }, el);
  const dia = new Map((sm.NIBP_DIA || []).map(([t, v]) => [t, v]));
  for (const [t, sys] of sm.NIBP_SYS || []) {
    if (sys === null) continue;
    const d = dia.get(t);
    svg("line", { x1: x(t), x2: x(t), y1: yL(sys), y2: yL(d ?? sys), class: "nibp" }, el);
    svg("circle", { cx: x(t), cy: yL(sys), r: 3, class: "nibp-dot" }, el);
  }
  for (const a of detail.alarms) {
    if (a.state !== "active" || a.t < since) continue;
    const tick = svg("line", { x1: x(a.t), x2: x(a.t), y1: m.t, y2: m.t + 10, class: `tick tick-${a.priority}` }, el);
    svg("title", {}, tick).textContent = `${a.code} (${a.priority})`;
  }
  const legend = [["line-hr", "HR"], ["line-pr", "PR"], ["line-spo2", "SpO2 (right)"], ["nibp", "NIBP sys-dia"]];
  legend.forEach(([cls, text], i) => {
    svg("line", { x1: m.l + i * 150, x2: m.l + i * 150 + 24, y1: h - 6, y2: h - 6, class: cls }, el);
    svg("text", { x: m.l + i * 150 + 30, y: h - 2, class: "axis" }, el).textContent = text;
  });
}
