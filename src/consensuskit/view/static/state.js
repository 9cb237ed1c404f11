// The cluster's state at one point of a trace, as the page shows it: a pure fold of
// trace records (applyRecord), so the same records give the same state, and a plain
// object, so a checkpoint is one structuredClone.  Everything protocol-specific comes
// from the catalog's ViewSpec (meta.view): role names, the generation field, rumour and
// vote patterns.  Bounded: logs keep MAX_RUNS runs, atomic commit MAX_TXNS transactions.

export const MAX_RUNS = 64;
export const MAX_TXNS = 12;

export function emptyState(meta) {
  const nodes = {};
  for (const id of meta.nodes) nodes[id] = emptyNode();
  return { nodes, txns: {}, txnOrder: [], latest: {}, lastRumour: "", partition: "", violations: 0, faults: 0 };
}

function emptyNode() {
  return {
    role: "", gen: "", leader: "", up: false, paused: false, inc: 0,
    commit: 0, applied: 0, last: 0, voters: null, lease: false, runs: [], members: {}, rumours: {},
  };
}

function nodeOf(state, id) {
  if (typeof id !== "string") return null;
  let n = state.nodes[id];
  if (!n) n = state.nodes[id] = emptyNode();
  return n;
}

// Compiled patterns per view (RegExp objects are not cloned into the state).
export function compileView(view) {
  return {
    view,
    leaders: new Set(view.leader_roles || []),
    rumours: new Set(view.rumours || []),
    rumourRe: view.rumour_pattern ? new RegExp(view.rumour_pattern, "g") : null,
    voteRe: view.vote_pattern ? new RegExp(view.vote_pattern) : null,
    yes: new Set(view.yes_votes || []),
    genField: view.generation_field || view.generation || "",
  };
}

function learn(n, first, last, gen) {
  if (!(last >= first)) return;
  const runs = n.runs;
  const top = runs.length ? runs[runs.length - 1] : null;
  if (top && top[2] === gen && first <= top[1] + 1 && last >= top[0]) {
    top[1] = Math.max(top[1], last);
  } else {
    runs.push([first, last, gen]);
    if (runs.length > MAX_RUNS) runs.splice(0, runs.length - MAX_RUNS);
  }
  n.commit = Math.max(n.commit, last);
}

function txnOf(state, id) {
  let x = state.txns[id];
  if (!x) {
    x = state.txns[id] = { txn: id, participants: [], votes: {}, decision: "", outcomes: {} };
    state.txnOrder.push(id);
    while (state.txnOrder.length > MAX_TXNS) delete state.txns[state.txnOrder.shift()];
  }
  return x;
}

function applyRec(state, r, cv) {
  const n = nodeOf(state, r.node);
  if (!n) return;
  switch (r.kind) {
    case "role": {
      n.role = String(r.role ?? "");
      if (cv.genField && r[cv.genField] !== undefined) n.gen = String(r[cv.genField]);
      if (typeof r.leader === "string") n.leader = r.leader;
      else n.leader = cv.leaders.has(n.role) ? r.node : "";
      n.up = true;
      break;
    }
    case "commit":
      // A commit index moving on learns every entry up to it (RaftScope's colours: the
      // generation the node was in when it learned them).
      if (typeof r.index === "number" && r.index > n.commit) learn(n, n.commit + 1, r.index, n.gen);
      break;
    case "learned":
      if (typeof r.slot === "number") {
        const first = typeof r.first === "number" ? r.first : r.slot;
        learn(n, first, r.slot, n.gen);
      }
      break;
    case "snapshot": case "restore":
      // Entries taken from a snapshot: known committed, their generation unknown here.
      if (typeof r.index === "number") n.commit = Math.max(n.commit, r.index);
      break;
    case "member":
      if (typeof r.member === "string") n.members[r.member] = `${r.state}/${r.incarnation ?? 0}`;
      break;
    case "begin": {
      const x = txnOf(state, String(r.txn));
      x.participants = String(r.participants || "").split(",").filter(Boolean);
      break;
    }
    case "decide":
      txnOf(state, String(r.txn)).decision = String(r.outcome);
      break;
    case "outcome":
      txnOf(state, String(r.txn)).outcomes[r.node] = String(r.outcome);
      break;
    case "chosen":
      if (r.rm !== undefined) txnOf(state, String(r.txn)).votes[String(r.rm)] = String(r.value);
      break;
    default:
      break;
  }
}

function applyMessage(state, r, cv) {
  const text = String(r.msg ?? "");
  if (cv.rumourRe && cv.rumours.has(r.type)) {
    cv.rumourRe.lastIndex = 0;
    const dst = nodeOf(state, r.dst);
    const src = nodeOf(state, r.src);
    for (const m of text.matchAll(cv.rumourRe)) {
      const id = m.groups ? m.groups.id : m[0];
      const at = id.indexOf("@");
      const key = id.slice(0, at);
      const counter = parseInt(id.slice(at + 1), 10) || 0;
      for (const x of [src, dst]) if (x && !((x.rumours[key] || 0) >= counter)) x.rumours[key] = counter;
      if (!((state.latest[key] || 0) >= counter)) {
        state.latest[key] = counter;
        state.lastRumour = key;
      }
    }
  }
  if (cv.voteRe) {
    const m = cv.voteRe.exec(text);
    if (m && m.groups) {
      const x = txnOf(state, m.groups.txn);
      x.votes[m.groups.rm || r.src] = m.groups.vote;
    }
  }
}

// A live node's status (core/capabilities.py status_dict): role, generation, leader, its
// log position, membership and lease.
function applyStatus(n, s) {
  if (!s || typeof s !== "object") return;
  if (s.role !== undefined) n.role = String(s.role);
  if (s.generation !== undefined) n.gen = String(s.generation);
  if (s.leader !== undefined) n.leader = s.leader === null ? "" : String(s.leader);
  if (typeof s.commit === "number" && s.commit > n.commit) learn(n, n.commit + 1, s.commit, n.gen);
  if (typeof s.applied === "number") n.applied = s.applied;
  if (typeof s.last_index === "number") n.last = s.last_index;
  if (Array.isArray(s.voters)) n.voters = s.voters.map(String);
  if (s.lease !== undefined) n.lease = Boolean(s.lease);
  n.up = true;
}

// Fold one record into state (in place).
export function applyRecord(state, r, cv) {
  switch (r.ev) {
    case "start": {
      const n = nodeOf(state, r.node);
      if (n) { n.up = true; n.paused = false; n.inc = r.incarnation ?? n.inc + 1; }
      break;
    }
    case "rec": applyRec(state, r, cv); break;
    case "deliver": applyMessage(state, r, cv); break;
    case "status": { const n = nodeOf(state, r.node); if (n) applyStatus(n, r); break; }
    case "snapshot": { const n = nodeOf(state, r.node); if (n) applyStatus(n, r.status); break; }
    case "fault": {
      state.faults += 1;
      const n = nodeOf(state, r.node);
      if (r.kind === "crash" || r.kind === "down") { if (n) n.up = false; }
      else if (r.kind === "restart") { if (n) { n.up = true; n.paused = false; } }
      else if (r.kind === "pause") { if (n) n.paused = true; }
      else if (r.kind === "resume") { if (n) n.paused = false; }
      else if (r.kind === "partition") state.partition = String(r.groups ?? "");
      else if (r.kind === "heal") state.partition = "";
      break;
    }
    case "violation": state.violations += 1; break;
    default: break;
  }
}
