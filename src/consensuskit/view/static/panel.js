// The cluster panel: one box per node (role, generation, leader, indices) and the
// protocol's own panel, chosen by the catalog's ViewSpec.panel: "log" draws each
// node's log as RaftScope does (entries coloured by the generation that learned them),
// "members" shows infection (gossip) or each member's view (SWIM), "votes" shows the
// recent transactions' votes and decisions.  Text only through textContent.

const GEN_COLOURS = ["#93c5fd", "#fca5a5", "#86efac", "#fde68a", "#c4b5fd", "#f9a8d4", "#a5f3fc", "#fdba74"];
const SHOWN_ENTRIES = 12;

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

export function genColour(gen) {
  let h = 0;
  const s = String(gen);
  for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) >>> 0;
  return GEN_COLOURS[h % GEN_COLOURS.length];
}

function logStrip(n, entryName) {
  const strip = el("div", "log");
  strip.title = `the last ${SHOWN_ENTRIES} ${entryName}s known committed, coloured by the generation that learned them`;
  const last = n.commit;
  const first = Math.max(1, last - SHOWN_ENTRIES + 1);
  const cells = [];
  for (let i = first; i <= last; i++) cells.push(i);
  for (const i of cells) {
    let gen = null;
    for (let k = n.runs.length - 1; k >= 0; k--) {
      const [a, b, g] = n.runs[k];
      if (i >= a && i <= b) { gen = g; break; }
    }
    const c = el("span", "entry", gen === null ? "·" : String(gen));
    if (gen !== null) c.style.background = genColour(gen);
    c.title = `${entryName} ${i}`;
    strip.appendChild(c);
  }
  if (!cells.length) strip.appendChild(el("span", "empty", `no committed ${entryName} yet`));
  return strip;
}

function rumourLine(state, n) {
  const keys = Object.keys(state.latest).sort();
  const current = keys.filter((k) => (n.rumours[k] || 0) >= state.latest[k]).length;
  const key = state.lastRumour;
  const infected = key !== "" && (n.rumours[key] || 0) >= state.latest[key];
  return { infected, text: key ? `${infected ? "infected" : "not yet"} by ${key}@${state.latest[key]} · ${current}/${keys.length} keys current` : "no rumours yet" };
}

export function renderCluster(root, meta, state) {
  const view = meta.view || {};
  const leaders = new Set(view.leader_roles || []);
  const genName = view.generation || "generation";
  root.textContent = "";
  const boxes = el("div", "nodes");
  for (const id of meta.nodes) {
    const n = state.nodes[id];
    const box = el("div", "node");
    box.dataset.node = id;
    if (!n.up) box.classList.add("down");
    if (n.paused) box.classList.add("paused");
    if (n.up && leaders.has(n.role)) box.classList.add("leader");
    const head = el("div", "head");
    head.appendChild(el("b", "", id));
    // A protocol without roles (SWIM: every member is alike) shows none.
    const role = n.role || ((view.roles || []).length ? "?" : "");
    head.appendChild(el("span", "role", n.up ? (n.paused ? `${role} (paused)`.trim() : role) : "down"));
    box.appendChild(head);
    const facts = [];
    if (view.generation) facts.push(`${genName} ${n.gen || "-"}`);
    if (n.leader) facts.push(`leader ${n.leader}`);
    if (view.panel === "log") facts.push(`commit ${n.commit}`);
    if (n.applied) facts.push(`applied ${n.applied}`);
    if (n.last > n.commit) facts.push(`last ${n.last}`);
    if (n.lease) facts.push("lease");
    if (n.inc > 1) facts.push(`incarnation ${n.inc}`);
    if (facts.length) box.appendChild(el("div", "facts", facts.join(" · ")));
    if (view.panel === "log") box.appendChild(logStrip(n, view.entry || "entry"));
    if (view.panel === "members") {
      if ((view.rumours || []).length) {
        const r = rumourLine(state, n);
        if (r.infected) box.classList.add("infected");
        box.appendChild(el("div", "facts", r.text));
      } else {
        const line = el("div", "members");
        for (const m of Object.keys(n.members).sort()) {
          const s = n.members[m];
          const chip = el("span", "member " + s.split("/")[0], `${m}:${s}`);
          line.appendChild(chip);
        }
        box.appendChild(line);
      }
    }
    boxes.appendChild(box);
  }
  root.appendChild(boxes);
  if (view.panel === "votes") root.appendChild(votesTable(meta, state));
  const facts = [];
  // The configuration as the leader (else any node) states it, with how many make a quorum.
  const lead = meta.nodes.map((id) => state.nodes[id]).find((n) => n.up && leaders.has(n.role) && n.voters);
  const voters = (lead || meta.nodes.map((id) => state.nodes[id]).find((n) => n.voters))?.voters;
  if (voters) facts.push(`voters ${voters.join(",")} · quorum ${Math.floor(voters.length / 2) + 1}`);
  if (state.partition) facts.push(`partition ${state.partition}`);
  if (state.faults) facts.push(`${state.faults} fault${state.faults === 1 ? "" : "s"}`);
  if (state.violations) facts.push(`${state.violations} violation${state.violations === 1 ? "" : "s"}`);
  root.appendChild(el("div", "cluster-facts", facts.join(" · ")));
}

function votesTable(meta, state) {
  const yes = new Set(meta.view.yes_votes || []);
  const table = el("table", "votes");
  const head = el("tr");
  for (const h of ["txn", "votes", "decision", "outcomes"]) head.appendChild(el("th", "", h));
  table.appendChild(head);
  for (const id of state.txnOrder.slice().reverse()) {
    const x = state.txns[id];
    const tr = el("tr");
    tr.appendChild(el("td", "", x.txn));
    const votes = el("td");
    for (const rm of Object.keys(x.votes).sort()) {
      const v = x.votes[rm];
      votes.appendChild(el("span", "vote " + (yes.has(v) ? "yes" : "no"), `${rm}:${v}`));
    }
    tr.appendChild(votes);
    tr.appendChild(el("td", "decision " + x.decision, x.decision || "…"));
    tr.appendChild(el("td", "", Object.keys(x.outcomes).sort().map((k) => `${k}:${x.outcomes[k]}`).join(" ")));
    table.appendChild(tr);
  }
  return table;
}
