// The page: loads the trace (inline JSON in an exported page, else GET view.json),
// builds the model, and drives the playhead (play, pause, step, seek, speed, jump to
// the next fault / violation).  In live mode (meta.live) it opens the /live websocket,
// appends records as they come (checking each node's seq: a gap is counted and the
// node's snapshot resets its count), and sends the control panel's actions.
// window.consensusView exposes the state for tests: seek(pos), hash(), text().

import { addRecord, buildModel, createModel, posAtTime, stateAt, timeAt } from "./model.js";
import { diagramHeight, drawDiagram, messageAt } from "./draw.js";
import { renderCluster } from "./panel.js";

// Live mode keeps the newest half when it passes this (window.consensusViewMaxLive: tests).
const MAX_LIVE_RECORDS = window.consensusViewMaxLive || 200000;
const $ = (id) => document.getElementById(id);

const ui = { model: null, pos: 0, playing: false, speed: 1, span: 1, heartbeats: true, lastFrame: 0, playTime: 0, follow: true, selected: null };

async function loadData() {
  const inline = $("view-data");
  if (inline) return JSON.parse(inline.textContent);
  const res = await fetch("view.json");
  if (!res.ok) throw new Error(`view.json: HTTP ${res.status}`);
  return res.json();
}

function defaultSpan(model) {
  const n = model.t.length;
  if (!n) return 1;
  const total = model.t[n - 1] - model.t[0];
  return Math.min(1, Math.max(0.02, total / 40));
}

// Where the last render spent its time (ms): the state, the cluster panel, the canvas.
const lastRender = { state: 0, panel: 0, canvas: 0 };

function render() {
  const model = ui.model;
  const t0 = performance.now();
  const state = stateAt(model, ui.pos);
  const t1 = performance.now();
  renderCluster($("cluster"), model.meta, state);
  const t2 = performance.now();
  const canvas = $("diagram");
  drawDiagram(canvas, model, { pos: ui.pos, span: ui.span, heartbeats: ui.heartbeats });
  const t3 = performance.now();
  Object.assign(lastRender, { state: t1 - t0, panel: t2 - t1, canvas: t3 - t2 });
  const n = model.records.length;
  $("seek").max = String(n);
  $("seek").value = String(ui.pos);
  const r = ui.pos > 0 ? model.records[ui.pos - 1] : null;
  $("position").textContent = `record ${ui.pos} / ${n} · t=${timeAt(model, ui.pos).toFixed(6)}`;
  $("current").textContent = r ? describe(r) : "(start)";
  renderSide();
}

function describe(r) {
  const skip = new Set(["t", "ev"]);
  const rest = Object.keys(r).filter((k) => !skip.has(k)).map((k) => `${k}=${typeof r[k] === "object" ? JSON.stringify(r[k]) : r[k]}`);
  return `${Number(r.t).toFixed(6)} ${r.ev} ${rest.join(" ")}`;
}

function renderSide() {
  const side = $("side");
  const model = ui.model;
  side.textContent = "";
  const sel = ui.selected;
  const centre = sel ? sel.idx : Math.max(0, ui.pos - 1);
  const title = document.createElement("h3");
  title.textContent = sel ? `${sel.label} at t=${sel.t.toFixed(6)}` : "records around the playhead";
  side.appendChild(title);
  if (sel && sel.detail) {
    const p = document.createElement("p");
    p.className = "detail";
    p.textContent = sel.detail;
    side.appendChild(p);
  }
  const list = document.createElement("ol");
  const from = Math.max(0, centre - 12), to = Math.min(model.records.length, centre + 9);
  list.start = from + 1;
  for (let i = from; i < to; i++) {
    const li = document.createElement("li");
    li.textContent = describe(model.records[i]);
    if (i === centre) li.className = "here";
    if (i >= ui.pos) li.classList.add("future");
    list.appendChild(li);
  }
  side.appendChild(list);
}

export function seek(pos, keepSelection = false) {
  ui.pos = Math.max(0, Math.min(pos, ui.model.records.length));
  ui.playTime = timeAt(ui.model, ui.pos);
  if (!keepSelection) ui.selected = null;
  render();
}

function jump(list, label) {
  const next = list.find((x) => x.idx >= ui.pos);
  if (!next) { $("current").textContent = `no ${label} after this point`; return; }
  ui.playing = false;
  ui.selected = { idx: next.idx, t: next.t, label: next.name ? `violation ${next.name}` : `fault ${next.text}`, detail: next.detail || "" };
  seek(next.idx + 1, true);
  updatePlayButton();
}

function updatePlayButton() { $("play").textContent = ui.playing ? "pause" : "play"; }

function frame(now) {
  if (ui.playing) {
    const dt = Math.min(0.1, (now - (ui.lastFrame || now)) / 1000);
    ui.playTime += dt * ui.speed;
    const pos = posAtTime(ui.model, ui.playTime);
    if (pos !== ui.pos) { ui.pos = pos; render(); }
    if (ui.pos >= ui.model.records.length && !ui.model.meta.live) { ui.playing = false; updatePlayButton(); }
  }
  ui.lastFrame = now;
  requestAnimationFrame(frame);
}

function sizeCanvas() {
  const canvas = $("diagram");
  const wrap = $("diagram-wrap");
  canvas.width = Math.max(480, Math.floor(wrap.clientWidth));
  canvas.height = diagramHeight(ui.model);
}

function bindControls() {
  $("play").onclick = () => {
    ui.playing = !ui.playing;
    if (ui.playing && ui.pos >= ui.model.records.length && !ui.model.meta.live) seek(0);
    ui.playTime = timeAt(ui.model, ui.pos);
    updatePlayButton();
  };
  $("step").onclick = () => { ui.playing = false; updatePlayButton(); seek(ui.pos + 1); };
  $("back").onclick = () => { ui.playing = false; updatePlayButton(); seek(ui.pos - 1); };
  $("seek").oninput = (e) => { ui.playing = false; updatePlayButton(); seek(parseInt(e.target.value, 10)); };
  $("speed").onchange = (e) => { ui.speed = parseFloat(e.target.value); };
  $("next-fault").onclick = () => jump(ui.model.faults, "fault");
  $("next-violation").onclick = () => jump(ui.model.violations, "violation");
  $("heartbeats").onchange = (e) => { ui.heartbeats = e.target.checked; render(); };
  $("zoom-in").onclick = () => { ui.span = Math.max(0.001, ui.span / 2); render(); };
  $("zoom-out").onclick = () => { ui.span = Math.min(3600, ui.span * 2); render(); };
  window.addEventListener("resize", () => { sizeCanvas(); render(); });
  // Clicking a message shows it, and the records around its delivery, in the side panel.
  $("diagram").addEventListener("click", (e) => {
    const canvas = $("diagram");
    const box = canvas.getBoundingClientRect();
    const px = (e.clientX - box.left) * (canvas.width / box.width);
    const py = (e.clientY - box.top) * (canvas.height / box.height);
    const m = messageAt(canvas, ui.model, { pos: ui.pos, span: ui.span, heartbeats: ui.heartbeats }, px, py);
    if (!m) return;
    const nodes = ui.model.meta.nodes;
    const fate = m.i1 < 0 || m.i1 >= ui.pos ? "in flight" : m.dropped ? "dropped" : "delivered";
    const idx = m.i1 >= 0 && m.i1 < ui.pos ? m.i1 : m.i0;
    ui.selected = { idx, t: ui.model.t[idx], label: `${nodes[m.a]} → ${nodes[m.b]} ${m.type} (${fate})`, detail: m.text };
    renderSide();
  });
  document.addEventListener("keydown", (e) => {
    if (e.target && ["INPUT", "SELECT", "TEXTAREA"].includes(e.target.tagName)) return;
    if (e.key === " ") { e.preventDefault(); $("play").click(); }
    else if (e.key === "ArrowRight") $("step").click();
    else if (e.key === "ArrowLeft") $("back").click();
  });
}

function legend(meta) {
  const root = $("legend");
  root.textContent = "";
  const items = (meta.view?.phases || []).map((p) => [p.name, p.colour]);
  items.push(["other", "#64748b"], ["dropped", "#dc2626"], ["heartbeat", "rgba(148,163,184,0.6)"]);
  items.push(["leading", "rgba(34,197,94,0.45)"], ["down", "rgba(15,23,42,0.55)"], ["paused", "rgba(234,179,8,0.6)"]);
  for (const [name, colour] of items) {
    const s = document.createElement("span");
    s.className = "key";
    const sw = document.createElement("i");
    sw.style.background = colour;
    s.appendChild(sw);
    s.appendChild(document.createTextNode(name));
    root.appendChild(s);
  }
}

// ------------------------------------------------------------------------ live mode
const live = { ws: null, seq: {}, gaps: 0, received: 0, nextId: 1, pending: new Map() };

function liveAppend(records) {
  const model = ui.model;
  const atEnd = ui.pos >= model.records.length;
  for (const r of records) {
    const node = r.node;
    if (typeof node === "string" && typeof r.seq === "number") {
      if (r.ev === "snapshot") live.seq[node] = r.seq;
      else {
        const last = live.seq[node];
        if (last !== undefined && r.seq <= last) continue; // a repeat
        if (last !== undefined && r.seq !== last + 1) live.gaps += 1;
        live.seq[node] = r.seq;
      }
    }
    live.received += 1;
    addRecord(model, r);
  }
  if (model.records.length > MAX_LIVE_RECORDS) {
    // Bounded memory: start again from the newest half (their state is re-folded; a
    // node's state from before it is lost until its next record or status).
    const dropped = model.records.length >> 1;
    ui.model = buildModel(model.meta, model.records.slice(dropped));
    ui.pos = Math.max(0, ui.pos - dropped);
  }
  $("live-count").textContent = `${live.received} records · ${live.gaps} gaps`;
  if (atEnd && ui.follow) ui.pos = ui.model.records.length;
  ui.playTime = timeAt(ui.model, ui.pos);
}

function startLive() {
  $("live").hidden = false;
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}/live`);
  live.ws = ws;
  let dirty = false;
  ws.onmessage = (e) => {
    const msg = JSON.parse(e.data);
    if (msg.records) { liveAppend(msg.records); dirty = true; }
    if (msg.snapshot) {
      const snaps = Object.entries(msg.snapshot).map(([node, status]) => ({ t: timeAt(ui.model, ui.model.records.length), ev: "snapshot", node, status }));
      liveAppend(snaps); dirty = true;
    }
    if (msg.reply && msg.id !== undefined) {
      const line = document.createElement("li");
      const what = live.pending.get(msg.id) || "";
      live.pending.delete(msg.id);
      line.className = msg.reply.ok ? "ok" : "bad";
      line.textContent = `${what}: ${msg.reply.ok ? "ok" : "refused"} ${msg.reply.detail ?? ""}`;
      $("replies").prepend(line);
    }
  };
  ws.onclose = (e) => { $("live-state").textContent = e.reason ? `disconnected: ${e.reason}` : "disconnected"; };
  ws.onopen = () => { $("live-state").textContent = "connected"; };
  setInterval(() => { if (dirty) { dirty = false; render(); } }, 100);
  const select = $("act-node"), to = $("act-to");
  for (const id of ui.model.meta.nodes) {
    for (const s of [select, to]) { const o = document.createElement("option"); o.value = id; o.textContent = id; s.appendChild(o); }
  }
  for (const b of document.querySelectorAll("#live button[data-act]")) {
    b.onclick = () => act(actionFor(b.dataset.act));
  }
}

function actionFor(name) {
  if (["kill", "restart", "pause", "resume"].includes(name)) return { action: name, node: $("act-node").value };
  if (name === "transfer") return { action: name, to: $("act-to").value };
  if (name === "partition") return { action: name, groups: $("act-groups").value.split("|").map((g) => g.split(",").map((s) => s.trim()).filter(Boolean)) };
  if (name === "put") return { action: name, key: $("act-key").value, value: $("act-value").value };
  if (name === "get") return { action: name, key: $("act-key").value };
  return { action: name };
}

export function act(action) {
  const id = live.nextId++;
  live.pending.set(id, JSON.stringify(action));
  live.ws.send(JSON.stringify({ act: action, id }));
  return id;
}

// ------------------------------------------------------------------------ start
async function sha256(text) {
  const bytes = new TextEncoder().encode(text);
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return Array.from(new Uint8Array(digest)).map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function main() {
  const started = performance.now();
  const data = await loadData();
  const loaded = performance.now();
  const meta = data.meta;
  document.title = meta.title || "consensuskit view";
  $("title").textContent = `${meta.title || "trace"}${meta.protocol ? " · " + meta.protocol : ""}`;
  ui.model = meta.live ? createModel(meta) : buildModel(meta, data.records || []);
  if (meta.live && data.records) for (const r of data.records) addRecord(ui.model, r);
  const indexed = performance.now();
  ui.span = defaultSpan(ui.model);
  legend(meta);
  bindControls();
  sizeCanvas();
  ui.pos = meta.live ? ui.model.records.length : 0;
  render();
  if (meta.live) startLive();
  const loadMs = performance.now() - started;
  window.consensusView = {
    loadMs,
    timings: { data: loaded - started, index: indexed - loaded, draw: performance.now() - indexed },
    lastRender,
    get records() { return ui.model.records.length; },
    get received() { return live.received; },
    get gaps() { return live.gaps; },
    get pos() { return ui.pos; },
    seek: (pos) => { const t = performance.now(); seek(pos); return performance.now() - t; },
    act,
    text: () => $("cluster").innerText + "\n" + $("position").textContent + "\n" + $("current").textContent,
    hash: () => sha256($("diagram").toDataURL()),
    ready: true,
  };
  document.body.dataset.ready = "1";
  requestAnimationFrame(frame);
}

main().catch((err) => {
  const p = $("error");
  p.hidden = false;
  p.textContent = `cannot show this trace: ${err.message || err}`;
});
