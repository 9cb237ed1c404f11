// The space-time diagram on a <canvas>: one horizontal lane per node, time to the right,
// the playhead near the right edge.  Only the visible window is drawn: messages are
// found by binary search on their send time (plus the few very long ones), faults and
// violations likewise.  Drawing reads the model and the playhead only, so the same
// position, window and canvas size give the same pixels.

import { firstMsgAt, timeAt } from "./model.js";

const LEFT = 56;
const TOP = 22;
const LANE = 34;
const MSG_COLOUR = "#64748b";
const HB_COLOUR = "rgba(148,163,184,0.35)";
const DROP_COLOUR = "#dc2626";
const FAULT_COLOUR = "rgba(220,38,38,0.75)";
const VIOLATION_COLOUR = "#7f1d1d";

export function diagramHeight(model) {
  return TOP + model.meta.nodes.length * LANE + 16;
}

// opts: {pos, span (seconds shown), heartbeats (bool), width}
// The mapping from time and lane to pixels for one frame (shared by drawing and clicks).
function geometry(canvas, model, opts) {
  const now = timeAt(model, opts.pos);
  const span = opts.span;
  const t1 = now + span * 0.08;
  const t0 = t1 - span;
  const plotW = canvas.width - LEFT - 8;
  return {
    now, span, t0, t1,
    x: (t) => LEFT + ((t - t0) / span) * plotW,
    y: (lane) => TOP + lane * LANE + LANE / 2,
  };
}

// The drawn message nearest to pixel (px, py), within 6 pixels, or null.
export function messageAt(canvas, model, opts, px, py) {
  const { now, t0, t1, x, y } = geometry(canvas, model, opts);
  let best = null, bestD = 36;
  const msgs = model.msgs;
  const consider = (m) => {
    if (m.i0 >= opts.pos || (m.hb && !opts.heartbeats)) return;
    const done = m.i1 >= 0 && m.i1 < opts.pos;
    const end = done ? m.t1 : now;
    if (end < t0) return;
    const ax = x(m.t0), ay = y(m.a), bx = x(end), by = y(m.b);
    const dx = bx - ax, dy = by - ay;
    const len2 = dx * dx + dy * dy;
    const f = len2 > 0 ? Math.max(0, Math.min(1, ((px - ax) * dx + (py - ay) * dy) / len2)) : 0;
    const ex = ax + f * dx - px, ey = ay + f * dy - py;
    const d = ex * ex + ey * ey;
    if (d < bestD) { bestD = d; best = m; }
  };
  for (let k = firstMsgAt(model, t0 - model.maxLen); k < msgs.length && msgs[k].t0 <= t1 && msgs[k].i0 < opts.pos; k++) consider(msgs[k]);
  for (const m of model.long) consider(m);
  return best;
}

export function drawDiagram(canvas, model, opts) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  const { now, span, t0, t1, x, y } = geometry(canvas, model, opts);
  const nodes = model.meta.nodes;
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, w, h);
  ctx.font = "12px monospace";
  ctx.textBaseline = "middle";

  // Time axis: a tick every "nice" step.
  const step = niceStep(span / 8);
  ctx.fillStyle = "#475569";
  ctx.strokeStyle = "#e2e8f0";
  ctx.lineWidth = 1;
  for (let tt = Math.ceil(t0 / step) * step; tt <= t1; tt += step) {
    const xx = Math.round(x(tt)) + 0.5;
    ctx.beginPath(); ctx.moveTo(xx, TOP - 4); ctx.lineTo(xx, h - 12); ctx.stroke();
    ctx.fillText(tt.toFixed(step < 0.01 ? 3 : step < 0.1 ? 2 : 1), xx + 2, 9);
  }

  // Lanes: leadership as a thick band, outages hatched, names at the left.
  nodes.forEach((id, i) => {
    const yy = y(i);
    for (const [a, b] of model.leads[i]) {
      const e = b === null ? now : Math.min(b, now);
      if (e < t0 || a > now) continue;
      ctx.fillStyle = "rgba(34,197,94,0.22)";
      ctx.fillRect(Math.max(x(a), LEFT), yy - 8, x(e) - Math.max(x(a), LEFT), 16);
    }
    ctx.strokeStyle = "#94a3b8"; ctx.lineWidth = 1.5;
    ctx.beginPath(); ctx.moveTo(LEFT, yy); ctx.lineTo(Math.min(x(now), w - 8), yy); ctx.stroke();
    for (const [a, b, kind] of model.outages[i]) {
      const e = b === null ? now : Math.min(b, now);
      if (e < t0 || a > now) continue;
      ctx.fillStyle = kind === "down" ? "rgba(15,23,42,0.55)" : "rgba(234,179,8,0.45)";
      ctx.fillRect(Math.max(x(a), LEFT), yy - 4, x(e) - Math.max(x(a), LEFT), 8);
    }
    ctx.fillStyle = "#0f172a";
    ctx.fillText(id, 6, yy);
  });

  // Messages sent in the window (or before it, still in flight inside it), clipped to
  // the plot so that lines from before the window do not cross the lane names.
  ctx.save();
  ctx.beginPath();
  ctx.rect(LEFT, 0, w - LEFT, h);
  ctx.clip();
  const phases = model.meta.view?.phases || [];
  const from = firstMsgAt(model, t0 - model.maxLen);
  const drawMsg = (m) => {
    if (m.i0 >= opts.pos) return;
    if (m.hb && !opts.heartbeats) return;
    const done = m.i1 >= 0 && m.i1 < opts.pos;
    const end = done ? m.t1 : now;
    if (end < t0) return;
    const xa = x(m.t0), ya = y(m.a), xb = x(end), yb = y(m.b);
    let colour = m.hb ? HB_COLOUR : m.phase >= 0 ? phases[m.phase].colour : MSG_COLOUR;
    if (done && m.dropped) colour = DROP_COLOUR;
    ctx.strokeStyle = colour;
    ctx.lineWidth = m.hb ? 1 : 1.4;
    if (!done) {
      // In flight: drawn up to now, towards its destination.
      const total = (m.t1 ?? now) - m.t0;
      const f = total > 0 ? Math.min(1, (now - m.t0) / total) : 1;
      ctx.setLineDash([4, 3]);
      ctx.beginPath(); ctx.moveTo(xa, ya); ctx.lineTo(xa + (xb - xa), ya + (yb - ya) * f); ctx.stroke();
      ctx.setLineDash([]);
      return;
    }
    ctx.beginPath(); ctx.moveTo(xa, ya); ctx.lineTo(xb, yb); ctx.stroke();
    if (m.dropped) {
      ctx.beginPath();
      ctx.moveTo(xb - 4, yb - 4); ctx.lineTo(xb + 4, yb + 4);
      ctx.moveTo(xb + 4, yb - 4); ctx.lineTo(xb - 4, yb + 4);
      ctx.stroke();
    } else if (!m.hb) {
      ctx.fillStyle = colour;
      ctx.beginPath(); ctx.arc(xb, yb, 2.2, 0, Math.PI * 2); ctx.fill();
    }
  };
  const msgs = model.msgs;
  for (let k = from; k < msgs.length && msgs[k].t0 <= t1 && msgs[k].i0 < opts.pos; k++) drawMsg(msgs[k]);
  for (const m of model.long) if (m.t0 < t0 - model.maxLen) drawMsg(m);
  ctx.restore();

  // Faults (node faults on their lane, cluster faults across every lane) and violations.
  const laneTop = TOP, laneBottom = TOP + nodes.length * LANE;
  for (const f of model.faults) {
    if (f.idx >= opts.pos || f.t < t0) continue;
    if (f.t > t1) break;
    const xx = Math.round(x(f.t)) + 0.5;
    ctx.strokeStyle = FAULT_COLOUR; ctx.lineWidth = 1.5;
    ctx.beginPath();
    if (f.lane >= 0) { ctx.moveTo(xx, y(f.lane) - 12); ctx.lineTo(xx, y(f.lane) + 12); }
    else { ctx.setLineDash([2, 3]); ctx.moveTo(xx, laneTop); ctx.lineTo(xx, laneBottom); }
    ctx.stroke(); ctx.setLineDash([]);
    ctx.fillStyle = FAULT_COLOUR;
    ctx.fillText(f.kind, xx + 3, f.lane >= 0 ? y(f.lane) - 12 : laneBottom + 6);
  }
  for (const v of model.violations) {
    if (v.idx >= opts.pos || v.t < t0) continue;
    if (v.t > t1) break;
    const xx = Math.round(x(v.t)) + 0.5;
    ctx.strokeStyle = VIOLATION_COLOUR; ctx.lineWidth = 3;
    ctx.beginPath(); ctx.moveTo(xx, laneTop - 6); ctx.lineTo(xx, laneBottom + 2); ctx.stroke();
    ctx.fillStyle = VIOLATION_COLOUR;
    ctx.fillText("⚠ " + v.name, xx + 4, laneTop - 2);
  }

  // The playhead.
  const xp = Math.round(x(now)) + 0.5;
  ctx.strokeStyle = "#0ea5e9"; ctx.lineWidth = 1;
  ctx.beginPath(); ctx.moveTo(xp, TOP - 6); ctx.lineTo(xp, h - 4); ctx.stroke();
}

function niceStep(raw) {
  if (!(raw > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 5, 10]) if (raw <= m * p) return m * p;
  return 10 * p;
}
