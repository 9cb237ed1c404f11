// The index the page draws from, built once from the records (and extended record by
// record in live mode): times, messages (send -> deliver/drop, paired first in first
// out by src, dst and mid), faults, violations, per-lane outage and leadership intervals, and
// state checkpoints every CHECKPOINT records so a seek replays at most that many.

import { applyRecord, compileView, emptyState } from "./state.js";

export const CHECKPOINT = 1000;
const LONG = 5; // seconds: messages in flight longer than this are kept in model.long

export function createModel(meta) {
  const cv = compileView(meta.view || {});
  const lanes = new Map(meta.nodes.map((id, i) => [id, i]));
  const phaseOf = new Map();
  (meta.view?.phases || []).forEach((p, i) => p.messages.forEach((m) => phaseOf.set(m, i)));
  return {
    meta, cv, lanes, phaseOf,
    heartbeats: new Set(meta.view?.heartbeats || []),
    records: [], t: [],
    msgs: [], long: [], pending: new Map(),
    faults: [], violations: [],
    outages: meta.nodes.map(() => []), // [t0, t1|null, kind] per lane
    leads: meta.nodes.map(() => []), // [t0, t1|null, gen] per lane
    state: emptyState(meta), checkpoints: [],
    maxLen: 0,
  };
}

function closeOpen(list, t) {
  const top = list.length ? list[list.length - 1] : null;
  if (top && top[1] === null) top[1] = t;
}

function lane(model, id) {
  const i = model.lanes.get(id);
  return i === undefined ? -1 : i;
}

// Append one record: index it, fold it into the running state, checkpoint.
export function addRecord(model, r) {
  const idx = model.records.length;
  if (idx % CHECKPOINT === 0) model.checkpoints.push(structuredClone(model.state));
  model.records.push(r);
  const t = typeof r.t === "number" ? r.t : (model.t.length ? model.t[model.t.length - 1] : 0);
  model.t.push(t);
  const ev = r.ev;
  if (ev === "send" || ev === "dup") {
    const a = lane(model, r.src), b = lane(model, r.dst);
    if (a >= 0 && b >= 0) {
      const m = {
        a, b, t0: t, t1: null, i0: idx, i1: -1, dropped: false,
        type: String(r.type ?? ""), text: String(r.msg ?? r.type ?? ""),
        hb: model.heartbeats.has(r.type), phase: model.phaseOf.has(r.type) ? model.phaseOf.get(r.type) : -1,
      };
      model.msgs.push(m);
      // Keyed by mid alone (no string to build per message); the lanes tell apart the
      // rare live messages whose sampled mids (CRC-32s) collide.
      const q = model.pending.get(r.mid);
      if (q) q.push(m); else model.pending.set(r.mid, [m]);
    }
  } else if (ev === "deliver" || ev === "drop") {
    const q = model.pending.get(r.mid);
    let m = null;
    if (q) {
      const a = lane(model, r.src), b = lane(model, r.dst);
      const k = q.findIndex((x) => x.a === a && x.b === b);
      if (k >= 0) m = q.splice(k, 1)[0];
      if (!q.length) model.pending.delete(r.mid);
    }
    if (!m) {
      // A delivery whose send we did not see (a sampled live stream): a message of length 0.
      const a = lane(model, r.src), b = lane(model, r.dst);
      if (a >= 0 && b >= 0) {
        m = { a, b, t0: t, t1: null, i0: idx, i1: -1, dropped: false, type: String(r.type ?? ""),
          text: String(r.msg ?? r.type ?? ""), hb: model.heartbeats.has(r.type),
          phase: model.phaseOf.has(r.type) ? model.phaseOf.get(r.type) : -1 };
        model.msgs.push(m);
      }
    }
    if (m) {
      m.t1 = t; m.i1 = idx; m.dropped = ev === "drop";
      const len = t - m.t0;
      if (len > LONG) model.long.push(m); else if (len > model.maxLen) model.maxLen = len;
    }
  } else if (ev === "fault") {
    const i = lane(model, r.node);
    model.faults.push({ idx, t, kind: String(r.kind), lane: i, text: faultText(r) });
    if (i >= 0) {
      if (r.kind === "crash" || r.kind === "down") { model.outages[i].push([t, null, "down"]); closeOpen(model.leads[i], t); }
      else if (r.kind === "pause") model.outages[i].push([t, null, "paused"]);
      else if (r.kind === "restart" || r.kind === "resume") closeOpen(model.outages[i], t);
    }
  } else if (ev === "start" || ev === "snapshot") {
    const i = lane(model, r.node);
    if (i >= 0) closeOpen(model.outages[i], t);
  } else if (ev === "violation") {
    model.violations.push({ idx, t, name: String(r.name ?? "violation"), detail: String(r.detail ?? "") });
  }
  const before = ev === "rec" && r.kind === "role" ? model.state.nodes[r.node] : null;
  const wasLeader = before ? model.cv.leaders.has(before.role) : false;
  applyRecord(model.state, r, model.cv);
  if (before) {
    const i = lane(model, r.node);
    const n = model.state.nodes[r.node];
    const isLeader = model.cv.leaders.has(n.role);
    if (i >= 0 && wasLeader && !isLeader) closeOpen(model.leads[i], t);
    if (i >= 0 && isLeader && (!wasLeader || model.leads[i].length === 0 || model.leads[i][model.leads[i].length - 1][1] !== null)) {
      model.leads[i].push([t, null, n.gen]);
    }
  }
}

export function faultText(r) {
  const skip = new Set(["t", "ev", "kind"]);
  const parts = Object.keys(r).filter((k) => !skip.has(k)).map((k) => `${k}=${typeof r[k] === "object" ? JSON.stringify(r[k]) : r[k]}`);
  return `${r.kind}${parts.length ? " " + parts.join(" ") : ""}`;
}

export function buildModel(meta, records) {
  const model = createModel(meta);
  for (const r of records) addRecord(model, r);
  return model;
}

// The state after the first pos records: the checkpoint at or before pos, replayed.
export function stateAt(model, pos) {
  const k = Math.min(Math.floor(pos / CHECKPOINT), model.checkpoints.length - 1);
  if (k < 0) return emptyState(model.meta);
  const state = structuredClone(model.checkpoints[k]);
  for (let i = k * CHECKPOINT; i < pos; i++) applyRecord(state, model.records[i], model.cv);
  return state;
}

// The number of records with t <= time (binary search; times never decrease).
export function posAtTime(model, time) {
  const t = model.t;
  let lo = 0, hi = t.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (t[mid] <= time) lo = mid + 1; else hi = mid;
  }
  return lo;
}

// The first message sent at or after time (msgs are in send order).
export function firstMsgAt(model, time) {
  const msgs = model.msgs;
  let lo = 0, hi = msgs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (msgs[mid].t0 < time) lo = mid + 1; else hi = mid;
  }
  return lo;
}

export function timeAt(model, pos) {
  if (pos <= 0 || model.t.length === 0) return model.t.length ? model.t[0] : 0;
  return model.t[Math.min(pos, model.t.length) - 1];
}
