"""A self-contained page showing a checked history (``consensuskit check --html``).

Modelled on Porcupine's visualization: one section per part (key), failing parts first
and open; in each, a time axis with one row per client and each operation as a bar
from its call to its return (pending operations run to the end, hatched).  The
(partial) linearization is drawn as numbered ticks joined by a line; the operations
that cannot be placed after it are red, with the reason.  Hovering a bar shows the
operation in words, its call and return, its place in the linearization and the state
after it; clicking pins that in the part's detail panel.  Times can be shown as real
values or compressed to event order (Porcupine's histories use line numbers as times).

Rules this module owns:
  * the page needs nothing outside itself: inline CSS and vanilla JS, no network;
  * data reaches the page only as JSON in a ``<script type="application/json">`` tag
    with ``<``, ``>`` and ``&`` escaped, and the script writes it with ``textContent``
    (never ``innerHTML``); the static HTML around it is escaped with ``html.escape``;
  * large histories stay openable: at most ``MAX_DRAWN_OPS`` operations are drawn per
    part (a window around the failure, with a note), at most ``MAX_EMBEDDED_OPS`` are
    embedded in the page, and a part's timeline is built only when its section opens.
"""

from __future__ import annotations

import html
import json
import math
import re
from typing import Any

from consensuskit.check.linearizability.checker import CheckResult
from consensuskit.check.linearizability.models import Model
from consensuskit.check.linearizability.search import ILLEGAL, OK, SKIPPED, UNKNOWN_VERDICT, PartitionResult

MAX_DRAWN_OPS = 2000  # per part
MAX_EMBEDDED_OPS = 120_000  # per page; failing parts are embedded regardless
MAX_STATE_CHARS = 240  # a state's description is cut in the middle beyond this
MAX_LISTED_SKIPPED = 1000

# Layout of one drawn operation in the embedded JSON (kept as arrays: a big page is
# mostly these).  ret is null for an operation that never returned; pos is its
# 1-based place in the (partial) linearization or null; bad is why it cannot be
# placed after the partial linearization, or null.
OP_FIELDS = ("client", "call", "ret", "call_slot", "ret_slot", "text", "line", "pos", "bad")

_VERDICT_WORDS = {
    OK: "linearizable",
    ILLEGAL: "not linearizable",
    UNKNOWN_VERDICT: "unknown (time budget ran out)",
    SKIPPED: "skipped",
}
_ORDER = {ILLEGAL: 0, UNKNOWN_VERDICT: 1, OK: 2, SKIPPED: 3}


def render_html(result: CheckResult, model: Model, title: str = "Linearizability check") -> str:
    """The page for ``result`` (checked against ``model``), as one HTML string."""
    parts = sorted(result.partitions, key=lambda p: (_ORDER.get(p.verdict, 9), len(p.ops)))
    data = page_data(result, model, title, parts)
    sections = []
    illegal_open = 0
    for n, part in enumerate(parts):
        if part.verdict == SKIPPED:
            continue
        is_open = (part.verdict == ILLEGAL and illegal_open < 5) or len(parts) == 1
        illegal_open += part.verdict == ILLEGAL
        sections.append(_section(n, part, data["parts"][n], is_open))
    skipped = [p for p in parts if p.verdict == SKIPPED]
    page = _TEMPLATE
    for name, value in (
        ("TITLE", html.escape(title)),
        ("HEADER", _header(result, model, parts)),
        ("SECTIONS", "\n".join(sections) or '<p class="empty">No operations.</p>'),
        ("SKIPPED", _skipped(skipped)),
        ("CSS", _CSS),
        ("DATA", _script_json(data)),
        ("JS", _JS),
    ):
        page = page.replace(f"@@{name}@@", value)
    return page


def page_data(
    result: CheckResult, model: Model, title: str, parts: list[PartitionResult] | None = None
) -> dict[str, Any]:
    """What the page's script gets: one entry per part (``None`` when not embedded)."""
    if parts is None:
        parts = sorted(result.partitions, key=lambda p: (_ORDER.get(p.verdict, 9), len(p.ops)))
    budget = MAX_EMBEDDED_OPS
    entries: list[dict[str, Any] | None] = []
    first_offender: list[int] | None = None
    for n, part in enumerate(parts):
        drawn = min(len(part.ops), MAX_DRAWN_OPS)
        if part.verdict == SKIPPED or not part.ops or (part.verdict != ILLEGAL and drawn > budget):
            entries.append(None)
            continue
        budget -= drawn
        entry = _part_data(part, model)
        entries.append(entry)
        if first_offender is None and entry["first_bad"] is not None:
            first_offender = [n, entry["first_bad"]]
    return {
        "title": title,
        "verdict": result.verdict,
        "model": result.model,
        "op_fields": list(OP_FIELDS),
        "first_offender": first_offender,
        "parts": entries,
    }


# -- one part ----------------------------------------------------------------------


def _key_label(key: Any) -> str:
    if key is None:
        return "(whole history)"
    return key if isinstance(key, str) else repr(key)


def _clip(text: str) -> str:
    if len(text) <= MAX_STATE_CHARS:
        return text
    half = MAX_STATE_CHARS // 2
    return f"{text[:half]} … ({len(text) - 2 * half} characters) … {text[-half:]}"


def _window(part: PartitionResult) -> tuple[list[int], str | None]:
    """The operations to draw (indices into ``part.ops``, in call order) and a note
    when some are left out: a window around the first unplaced operation for a
    failing part, around the end of the partial linearization for an undecided one,
    from the start otherwise."""
    ops = part.ops
    by_call = sorted(range(len(ops)), key=lambda i: (ops[i].call, ops[i].ret))
    if len(ops) <= MAX_DRAWN_OPS:
        return by_call, None
    rank = {i: r for r, i in enumerate(by_call)}
    if part.unplaced:
        focus = min(rank[i] for i, _ in part.unplaced)
    elif part.verdict != OK and part.linearization:
        focus = max(rank[i] for i in part.linearization[-50:])
    else:
        focus = 0
    start = max(0, min(focus - (3 * MAX_DRAWN_OPS) // 4, len(ops) - MAX_DRAWN_OPS))
    chosen = by_call[start : start + MAX_DRAWN_OPS]
    inside = set(chosen)
    missing = [i for i, _ in part.unplaced if i not in inside]
    chosen = sorted(chosen + missing, key=rank.__getitem__)
    first, last = ops[chosen[0]].call, ops[chosen[-1]].call
    note = (
        f"Showing {len(chosen)} of {len(ops)} operations (those invoked from {first:g} to {last:g}); "
        "the linearization's numbers count every operation."
    )
    return chosen, note


def _part_data(part: PartitionResult, model: Model) -> dict[str, Any]:
    ops = part.ops
    drawn, note = _window(part)
    position = {i: k for k, i in enumerate(part.linearization, start=1)}
    unplaced = dict(part.unplaced)
    # A linearization point: no earlier than its call nor than the previous point.
    point: dict[int, float] = {}
    last = -math.inf
    for i in part.linearization:
        last = max(last, ops[i].call)
        point[i] = last
    # Events in time order; ties: calls, then points (in linearization order), then
    # attempts to place the unplaced, then returns (intervals are closed).
    events: list[tuple[float, int, int, int]] = []
    for i in drawn:
        op = ops[i]
        events.append((op.call, 0, 0, i))
        if i in point:
            events.append((point[i], 1, position[i], i))
        if i in unplaced:
            events.append((max(op.call, last), 2, 0, i))
        if not op.pending:
            events.append((op.ret, 3, 0, i))
    events.sort()
    # Compressed time: one slot per distinct (time, kind) of calls and returns, one per
    # point (a point sits on its own call's slot when nothing came between).
    slot = -1
    slot_times: list[float] = []
    slots: dict[tuple[int, int], int] = {}
    previous: tuple[float, int] | None = None
    for time, kind, _, i in events:
        shares = (
            previous is not None
            and previous[0] == time
            and (
                (kind in (0, 3) and previous[1] == kind)
                or (kind == 1 and previous[1] == 0 and ops[i].call == time)
            )
        )
        if not shares:
            slot += 1
            slot_times.append(time)
        slots[(kind, i)] = slot
        previous = (time, kind)
    end_slot = slot + 1
    finite = [t for t, _, _, _ in events]
    t0 = min(finite, default=0.0)
    t_last = max(finite, default=0.0)
    t_end = t_last + max(0.05 * (t_last - t0), 1e-6 if t_last != t0 else 1.0)

    clients = sorted({ops[i].client for i in drawn}, key=_natural)
    client_index = {c: n for n, c in enumerate(clients)}
    index_of = {i: j for j, i in enumerate(drawn)}
    rows = []
    needed: set[int] = set()
    for i in drawn:
        op = ops[i]
        pos = position.get(i)
        if pos is not None:
            needed.update((pos, pos - 1))
        rows.append(
            [
                client_index[op.client],
                op.call,
                None if op.pending else op.ret,
                slots[(0, i)],
                end_slot if op.pending else slots[(3, i)],
                model.describe_operation(op.input, op.output),
                op.line,
                pos,
                unplaced.get(i),
            ]
        )
    states = {str(k): _clip(part.states[k - 1]) for k in sorted(needed) if 1 <= k <= len(part.states)}
    points = [
        [index_of[i], slots[(1, i)], point[i], position[i]] for i in part.linearization if i in index_of
    ]
    attempts = [[index_of[i], slots[(2, i)], max(ops[i].call, last)] for i in unplaced if i in index_of]
    prefix_state = _clip(part.states[-1]) if part.states else _clip(model.describe_state(model.init()))
    return {
        "key": _key_label(part.key),
        "verdict": part.verdict,
        "total": len(ops),
        "linearized": len(part.linearization),
        "note": note,
        "clients": clients,
        "ops": rows,
        "points": points,
        "attempts": attempts,
        "states": states,
        "initial_state": _clip(model.describe_state(model.init())),
        "prefix_state": prefix_state,
        "slots": end_slot,
        "slot_times": slot_times,
        "t0": t0,
        "t_end": t_end,
        "first_bad": index_of[part.unplaced[0][0]] if part.unplaced else None,
    }


def _natural(name: str) -> list[Any]:
    """c2 before c10."""
    return [(0, int(tok), "") if tok.isdigit() else (1, 0, tok) for tok in re.split(r"(\d+)", name) if tok]


# -- static HTML -------------------------------------------------------------------


def _header(result: CheckResult, model: Model, parts: list[PartitionResult]) -> str:
    counts = {v: sum(1 for p in parts if p.verdict == v) for v in (ILLEGAL, UNKNOWN_VERDICT, OK, SKIPPED)}
    shown = ", ".join(f"{n} {_VERDICT_WORDS[v]}" for v, n in counts.items() if n)
    verdict = {OK: "Linearizable", ILLEGAL: "NOT linearizable"}.get(result.verdict, "Unknown")
    facts = (
        f"{result.ops} operations · {len(parts)} part{'s' if len(parts) != 1 else ''}"
        f"{' (' + shown + ')' if shown else ''} · model {result.model} · {result.seconds:.3f} s"
    )
    return (
        f'<div class="verdict verdict-{html.escape(result.verdict)}" id="verdict">{verdict}</div>\n'
        f'<p class="facts">{html.escape(facts)}</p>\n'
        f'<pre class="explain">{html.escape(result.explain(model))}</pre>'
    )


def _section(n: int, part: PartitionResult, entry: dict[str, Any] | None, is_open: bool) -> str:
    words = [f"{len(part.ops)} operations"]
    if part.verdict != OK:
        words.append(f"{len(part.linearization)} linearized")
    if part.unplaced:
        words.append(f"{len(part.unplaced)} cannot be placed next")
    words.append(f"{part.seconds:.3f} s")
    badge = html.escape(_VERDICT_WORDS.get(part.verdict, part.verdict))
    key = html.escape(_key_label(part.key))
    summary = (
        f'<span class="badge badge-{html.escape(part.verdict)}">{badge}</span> '
        f'key <code class="key">{key}</code> · {html.escape(" · ".join(words))}'
    )
    body = []
    if part.unplaced:
        body.append('<ul class="offenders">')
        for i, why in part.unplaced:
            op = part.ops[i]
            ret = "never returned" if op.pending else f"{op.ret:g}"
            where = f", line {op.line}" if op.line is not None else ""
            body.append(
                f'<li class="offender">client <code>{html.escape(op.client)}</code> '
                f"[{op.call:g}, {ret}]{where}: {html.escape(why)}</li>"
            )
        body.append("</ul>")
    if entry is None:
        body.append(
            f'<p class="note">Not drawn: the page holds at most {MAX_EMBEDDED_OPS} operations '
            "and the failing parts come first.</p>"
        )
    else:
        if entry["note"]:
            body.append(f'<p class="note">{html.escape(entry["note"])}</p>')
        body.append(f'<div class="timeline" data-part="{n}"></div>')
        body.append(
            f'<div class="detail" data-part="{n}">Hover over an operation; click it to pin it here.</div>'
        )
    attrs = f'class="part part-{html.escape(part.verdict)}" id="part-{n}" data-part="{n}"'
    return (
        f"<details {attrs}{' open' if is_open else ''}>\n<summary>{summary}</summary>\n"
        f'<div class="part-body">\n' + "\n".join(body) + "\n</div>\n</details>"
    )


def _skipped(parts: list[PartitionResult]) -> str:
    if not parts:
        return ""
    items = "".join(
        f"<li><code>{html.escape(_key_label(p.key))}</code> ({len(p.ops)} operations)</li>"
        for p in parts[:MAX_LISTED_SKIPPED]
    )
    more = f"<li>… and {len(parts) - MAX_LISTED_SKIPPED} more</li>" if len(parts) > MAX_LISTED_SKIPPED else ""
    return (
        f'<details class="skipped" id="skipped"><summary>{len(parts)} part{"s" if len(parts) != 1 else ""} '
        "not checked (checking stops at the first part that fails; <code>--all-parts</code> "
        f"checks them all)</summary><ul>{items}{more}</ul></details>"
    )


def _script_json(data: dict[str, Any]) -> str:
    """JSON that cannot end its ``<script>`` element nor open a comment in it."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>@@TITLE@@</title>
<style>@@CSS@@</style>
</head>
<body>
<header>
<h1>@@TITLE@@</h1>
@@HEADER@@
</header>
<div class="toolbar" id="toolbar">
<span>time:
<label><input type="radio" name="mode" value="compressed" checked> event order</label>
<label><input type="radio" name="mode" value="real"> real values</label></span>
<span>zoom: <button type="button" id="zoom-out" title="narrower">&minus;</button>
<button type="button" id="zoom-in" title="wider">+</button></span>
<button type="button" id="jump" hidden>jump to the offending operation</button>
<span class="legend"><span class="sw sw-lin"></span> linearized
<span class="sw sw-plain"></span> not in the linearization
<span class="sw sw-pending"></span> never returned
<span class="sw sw-bad"></span> cannot be placed</span>
</div>
<main id="parts">
@@SECTIONS@@
@@SKIPPED@@
</main>
<div class="tooltip" id="tooltip" role="tooltip"></div>
<script type="application/json" id="check-data">@@DATA@@</script>
<script>@@JS@@</script>
</body>
</html>
"""

_CSS = """
body { font-family: system-ui, Helvetica, Arial, sans-serif; margin: 0 16px 40px; color: #222; }
h1 { font-size: 1.3rem; margin: 14px 0 8px; }
.verdict { display: inline-block; font-weight: bold; font-size: 1.2rem; padding: 4px 12px;
  border-radius: 4px; }
.verdict-ok { background: #d8f5dc; color: #17612a; }
.verdict-illegal { background: #ffd9d9; color: #9b0000; }
.verdict-unknown { background: #fff0c2; color: #7a5a00; }
.facts { margin: 6px 0; color: #444; }
.explain { background: #f6f6f6; padding: 8px; border-radius: 4px; overflow-x: auto; font-size: 0.8rem;
  max-height: 18em; }
.toolbar { position: sticky; top: 0; z-index: 5; background: rgba(255,255,255,0.95); padding: 6px 0;
  border-bottom: 1px solid #ddd; display: flex; gap: 18px; flex-wrap: wrap; align-items: center;
  font-size: 0.85rem; }
.legend { color: #555; }
.sw { display: inline-block; width: 14px; height: 10px; border: 1px solid #888; margin-left: 8px;
  vertical-align: middle; }
.sw-lin { background: #bcd8ff; } .sw-plain { background: #eee; }
.sw-pending { background: repeating-linear-gradient(45deg, #ddd 0 3px, #fff 3px 6px); }
.sw-bad { background: #ffc4c4; border-color: #c00; }
details.part { border: 1px solid #ddd; border-radius: 4px; margin: 10px 0; }
details.part > summary { padding: 6px 8px; cursor: pointer; background: #fafafa; }
details.part-illegal { border-color: #e0a0a0; }
.part-body { padding: 6px 8px; }
.badge { font-size: 0.75rem; padding: 1px 6px; border-radius: 3px; font-weight: bold; }
.badge-ok { background: #d8f5dc; color: #17612a; }
.badge-illegal { background: #ffd9d9; color: #9b0000; }
.badge-unknown { background: #fff0c2; color: #7a5a00; }
.offenders { margin: 4px 0 8px; padding-left: 20px; color: #9b0000; font-size: 0.85rem; }
.note { color: #666; font-size: 0.8rem; margin: 4px 0; }
.timeline { border: 1px solid #eee; }
.tl-inner { display: flex; width: max-content; }
.tl-labels { flex: none; width: 90px; position: sticky; left: 0; z-index: 6; background: #fcfcfc;
  border-right: 1px solid #ddd; font: 11px Menlo, Consolas, monospace; }
.tl-label { position: absolute; right: 6px; height: 32px; line-height: 32px; white-space: nowrap;
  overflow: hidden; max-width: 84px; text-overflow: ellipsis; }
.tl-scroll { overflow: auto; max-height: 70vh; }
.tl-canvas { position: relative; flex: none; }
.tl-canvas svg { position: absolute; left: 0; top: 0; pointer-events: none; overflow: visible; z-index: 2; }
.op { position: absolute; height: 22px; line-height: 20px; box-sizing: border-box; padding: 0 3px;
  border: 1px solid #999; border-radius: 4px; background: #eee; font: 11px Menlo, Consolas, monospace;
  white-space: nowrap; overflow: hidden; text-overflow: ellipsis; cursor: pointer; z-index: 1; }
.op.linearized { background: #bcd8ff; border-color: #5b84b8; }
.op.pending { background: repeating-linear-gradient(45deg, #e4e4e4 0 4px, #fff 4px 8px);
  border-style: dashed; border-right: none; border-radius: 4px 0 0 4px; opacity: 0.85; }
.op.pending.linearized { background: repeating-linear-gradient(45deg, #bcd8ff 0 4px, #fff 4px 8px); }
.op.offending { background: #ffc4c4; border: 2px solid #c00; color: #8a0000; font-weight: bold; z-index: 3; }
.op.selected { outline: 2px solid #111; z-index: 4; }
.axis text { font: 10px system-ui, sans-serif; fill: #666; }
.axis line { stroke: #ccc; }
.lp-tick { stroke: rgba(0,0,0,0.55); stroke-width: 3; }
.lp-line { stroke: rgba(0,0,0,0.45); stroke-width: 1.5; }
.lp-num { font: 9px system-ui, sans-serif; fill: #333; }
.try-tick { stroke: rgba(220,0,0,0.8); stroke-width: 3; }
.try-line { stroke: rgba(220,0,0,0.7); stroke-width: 1.5; stroke-dasharray: 4 3; }
.detail { margin-top: 6px; padding: 6px 8px; background: #f6f8fb; border-radius: 4px; font-size: 0.85rem;
  min-height: 1.2em; }
.tooltip { position: absolute; display: none; z-index: 10; max-width: 520px; background: #fff;
  border: 1px solid #bbb; border-radius: 4px; padding: 6px 8px; font-size: 0.8rem;
  box-shadow: 0 2px 6px rgba(0,0,0,0.15); }
.info-op { font-family: Menlo, Consolas, monospace; font-weight: bold; margin-bottom: 3px;
  word-break: break-all; }
.info-bad { color: #9b0000; font-weight: bold; }
.info-state { font-family: Menlo, Consolas, monospace; word-break: break-all; }
.skipped { margin-top: 14px; color: #555; }
"""

_JS = r"""
'use strict';
(function () {
  const DATA = JSON.parse(document.getElementById('check-data').textContent);
  const ROW = 32, BAR = 22, AXIS = 30, PAD = 14, STEP = 16, NUM_GAP = 14, TICK_GAP = 70, MAX_TEXT = 260;
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const view = {mode: 'compressed', zoom: 1};
  const timelines = new Map();
  const tooltip = document.getElementById('tooltip');
  let pinned = null;

  function fmt(t) {
    if (t === null || t === undefined) return 'never';
    return Number.isInteger(t) ? String(t) : String(Number(t.toPrecision(7)));
  }
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function svg(parent, tag, attrs, text) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const k of Object.keys(attrs)) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    parent.appendChild(e);
    return e;
  }

  // Rows: one per client, more when a client's operations overlap (one never returned).
  function layoutRows(d) {
    const order = d.ops.map((_, i) => i).sort((a, b) => d.ops[a][3] - d.ops[b][3]);
    const lanes = d.clients.map(() => []);
    const laneOf = new Array(d.ops.length);
    for (const i of order) {
      const [client, , , callSlot, retSlot] = d.ops[i];
      const ends = lanes[client];
      let lane = ends.findIndex((end) => end < callSlot);
      if (lane < 0) { lane = ends.length; ends.push(0); }
      ends[lane] = retSlot;
      laneOf[i] = lane;
    }
    const labels = [], first = [];
    d.clients.forEach((name, c) => {
      first.push(labels.length);
      for (let l = 0; l < Math.max(1, lanes[c].length); l++) labels.push(l === 0 ? name : name + ' ·');
    });
    return {labels, rowOf: laneOf.map((lane, i) => first[d.ops[i][0]] + lane)};
  }

  function niceStep(span, count) {
    const raw = span / Math.max(1, count);
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
    return 10 * p;
  }

  function build(pid) {
    if (timelines.has(pid)) return timelines.get(pid);
    const d = DATA.parts[pid];
    const host = document.querySelector('.timeline[data-part="' + pid + '"]');
    if (!d || !host) return null;
    const {labels, rowOf} = layoutRows(d);
    const height = AXIS + labels.length * ROW + 8;
    const labelCol = el('div', 'tl-labels');
    labelCol.style.height = height + 'px';
    labels.forEach((name, r) => {
      const lab = el('div', 'tl-label', name);
      lab.style.top = (AXIS + r * ROW) + 'px';
      lab.title = name;
      labelCol.appendChild(lab);
    });
    const scroll = el('div', 'tl-scroll');
    const canvas = el('div', 'tl-canvas');
    canvas.style.height = height + 'px';
    const overlay = document.createElementNS(SVG_NS, 'svg');
    overlay.setAttribute('height', height);
    canvas.appendChild(overlay);
    const bars = d.ops.map((op, i) => {
      const [, , ret, , , text, , pos, bad] = op;
      const bar = el('div', 'op', text);
      if (pos !== null) bar.classList.add('linearized');
      if (ret === null) bar.classList.add('pending');
      if (bad !== null) { bar.classList.add('offending'); bar.dataset.offending = 'true'; }
      bar.dataset.part = pid;
      bar.dataset.op = i;
      bar.style.top = (AXIS + rowOf[i] * ROW + (ROW - BAR) / 2) + 'px';
      bar.addEventListener('mouseenter', (ev) => { if (!pinned) showTip(pid, i, ev); });
      bar.addEventListener('mousemove', (ev) => { if (!pinned) moveTip(ev); });
      bar.addEventListener('mouseleave', () => { if (!pinned) tooltip.style.display = 'none'; });
      bar.addEventListener('click', (ev) => { ev.stopPropagation(); select(pid, i); });
      canvas.appendChild(bar);
      return bar;
    });
    // The labels scroll with the rows and stay at the left edge (sticky).
    const inner = el('div', 'tl-inner');
    inner.append(labelCol, canvas);
    scroll.appendChild(inner);
    host.replaceChildren(scroll);
    const t = {d, pid, rowOf, bars, canvas, overlay, layout: null};
    t.layout = () => layout(t);
    t.layout();
    timelines.set(pid, t);
    return t;
  }

  // Compressed time, as Porcupine lays it out: a left-to-right scan placing each slot
  // at least STEP after the one before, and each return far enough from its call for
  // the operation's text (up to MAX_TEXT pixels) to fit.
  const measure = document.createElement('canvas').getContext('2d');
  measure.font = '11px Menlo, Consolas, monospace';
  function slotPositions(d) {
    if (d.positions) return d.positions;
    const ending = new Map();
    d.ops.forEach((op) => {
      const retSlot = op[4];
      if (!ending.has(retSlot)) ending.set(retSlot, []);
      ending.get(retSlot).push(op);
    });
    const pos = new Float64Array(d.slots + 1);
    for (let s = 1; s <= d.slots; s++) {
      let p = pos[s - 1] + STEP;
      for (const op of ending.get(s) || []) {
        const text = Math.min(MAX_TEXT, 1.1 * measure.measureText(op[5]).width + 14);
        p = Math.max(p, pos[op[3]] + text);
      }
      pos[s] = p;
    }
    d.positions = pos;
    return pos;
  }

  function xFunction(d) {
    if (view.mode === 'real') {
      const width = Math.max(400, slotPositions(d)[d.slots]) * view.zoom;
      const span = (d.t_end - d.t0) || 1;
      return {width: width + 2 * PAD, x: (slot, time) => PAD + ((time - d.t0) / span) * width};
    }
    const pos = slotPositions(d);
    return {width: pos[d.slots] * view.zoom + 2 * PAD, x: (slot) => PAD + pos[slot] * view.zoom};
  }

  function layout(t) {
    const d = t.d;
    const {width, x} = xFunction(d);
    t.canvas.style.width = width + 'px';
    t.overlay.setAttribute('width', width);
    t.overlay.replaceChildren();
    d.ops.forEach((op, i) => {
      const [, call, ret, callSlot, retSlot] = op;
      const x1 = x(callSlot, call);
      const x2 = x(retSlot, ret === null ? d.t_end : ret);
      t.bars[i].style.left = x1 + 'px';
      t.bars[i].style.width = Math.max(4, x2 - x1) + 'px';
    });
    drawAxis(t, x, width);
    const top = (i) => AXIS + t.rowOf[i] * ROW + (ROW - BAR) / 2 - 4;
    const bottom = (i) => top(i) + BAR + 8;
    // Linearization points, numbered, each joined to the one before it.
    let prev = null;
    const lastNum = new Map();
    for (const [i, slot, time, k] of d.points) {
      const px = x(slot, time);
      if (prev !== null && prev.k === k - 1) {
        const down = t.rowOf[prev.i] < t.rowOf[i], up = t.rowOf[prev.i] > t.rowOf[i];
        svg(t.overlay, 'line', {class: 'lp-line', x1: prev.x, x2: px,
          y1: down ? bottom(prev.i) : top(prev.i), y2: up ? bottom(i) : top(i)});
      }
      svg(t.overlay, 'line', {class: 'lp-tick', x1: px, x2: px, y1: top(i), y2: bottom(i)});
      const row = t.rowOf[i];
      if (!lastNum.has(row) || px - lastNum.get(row) >= NUM_GAP) {
        svg(t.overlay, 'text', {class: 'lp-num', x: px + 2, y: top(i) - 1}, String(k));
        lastNum.set(row, px);
      }
      prev = {i, k, x: px};
    }
    // The operations that cannot come next: red, from the last point.
    for (const [i, slot, time] of d.attempts) {
      const px = x(slot, time);
      if (prev !== null && prev.k === d.linearized) {
        const down = t.rowOf[prev.i] < t.rowOf[i], up = t.rowOf[prev.i] > t.rowOf[i];
        svg(t.overlay, 'line', {class: 'try-line', x1: prev.x, x2: px,
          y1: down ? bottom(prev.i) : top(prev.i), y2: up ? bottom(i) : top(i)});
      }
      svg(t.overlay, 'line', {class: 'try-tick', x1: px, x2: px, y1: top(i), y2: bottom(i)});
    }
  }

  function drawAxis(t, x, width) {
    const d = t.d;
    const g = svg(t.overlay, 'g', {class: 'axis'});
    svg(g, 'line', {x1: 0, x2: width, y1: AXIS - 12, y2: AXIS - 12});
    if (view.mode === 'real') {
      const step = niceStep(d.t_end - d.t0 || 1, width / TICK_GAP);
      for (let v = Math.ceil(d.t0 / step) * step; v <= d.t_end; v += step) {
        const px = x(0, v);
        svg(g, 'line', {x1: px, x2: px, y1: AXIS - 16, y2: AXIS - 12});
        svg(g, 'text', {x: px + 2, y: AXIS - 17}, fmt(Number(v.toPrecision(12))));
      }
      return;
    }
    let last = -Infinity;
    d.slot_times.forEach((time, slot) => {
      const px = x(slot, time);
      if (px - last < TICK_GAP) return;
      svg(g, 'line', {x1: px, x2: px, y1: AXIS - 16, y2: AXIS - 12});
      svg(g, 'text', {x: px + 2, y: AXIS - 17}, fmt(time));
      last = px;
    });
  }

  function info(pid, i) {
    const d = DATA.parts[pid];
    const [client, call, ret, , , text, line, pos, bad] = d.ops[i];
    const box = el('div');
    box.appendChild(el('div', 'info-op', text));
    box.appendChild(el('div', '', 'client ' + d.clients[client] + (line === null ? '' : ' · line ' + line)));
    box.appendChild(el('div', '', 'call ' + fmt(call) + ' · return ' +
      (ret === null ? 'never (it may take effect at any time after its call, or never)' : fmt(ret))));
    const state = (label, words) => {
      const row = el('div', '', label + ': ');
      row.appendChild(el('span', 'info-state', words === undefined ? '?' : words));
      return row;
    };
    if (pos !== null) {
      const partial = d.verdict === 'ok' ? '' : ' (the longest partial linearization found)';
      box.appendChild(el('div', '', 'linearized #' + pos + ' of ' + d.linearized + partial));
      box.appendChild(state('state before', pos === 1 ? d.initial_state : d.states[String(pos - 1)]));
      box.appendChild(state('state after', d.states[String(pos)]));
    } else if (bad !== null) {
      box.appendChild(el('div', 'info-bad', 'Cannot be placed next: ' + bad));
      box.appendChild(state('state after the ' + d.linearized + ' linearized operations', d.prefix_state));
    } else if (d.verdict !== 'ok') {
      box.appendChild(el('div', '', 'Not in the longest partial linearization found.'));
    }
    return box;
  }

  function showTip(pid, i, ev) {
    tooltip.replaceChildren(info(pid, i));
    tooltip.style.display = 'block';
    moveTip(ev);
  }
  function moveTip(ev) {
    const room = document.documentElement.scrollLeft + document.documentElement.clientWidth -
      tooltip.getBoundingClientRect().width - 10;
    tooltip.style.left = Math.max(0, Math.min(ev.pageX + 16, room)) + 'px';
    tooltip.style.top = (ev.pageY + 16) + 'px';
  }

  function unpin() {
    if (!pinned) return;
    const t = timelines.get(pinned.pid);
    if (t) t.bars[pinned.i].classList.remove('selected');
    pinned = null;
  }
  function select(pid, i) {
    const again = pinned && pinned.pid === pid && pinned.i === i;
    unpin();
    tooltip.style.display = 'none';
    if (again) return;
    const t = build(pid);
    if (!t) return;
    pinned = {pid, i};
    t.bars[i].classList.add('selected');
    const panel = document.querySelector('.detail[data-part="' + pid + '"]');
    if (panel) panel.replaceChildren(info(pid, i));
  }

  document.querySelectorAll('details.part').forEach((det) => {
    const pid = Number(det.dataset.part);
    det.addEventListener('toggle', () => { if (det.open) build(pid); });
    if (det.open) build(pid);
  });
  document.querySelectorAll('input[name="mode"]').forEach((input) => {
    input.addEventListener('change', () => {
      view.mode = input.value;
      timelines.forEach((t) => t.layout());
    });
  });
  const zoom = (f) => {
    view.zoom = Math.min(16, Math.max(0.125, view.zoom * f));
    timelines.forEach((t) => t.layout());
  };
  document.getElementById('zoom-in').addEventListener('click', () => zoom(1.5));
  document.getElementById('zoom-out').addEventListener('click', () => zoom(1 / 1.5));
  document.addEventListener('keydown', (ev) => { if (ev.key === 'Escape') unpin(); });
  const jump = document.getElementById('jump');
  if (DATA.first_offender) {
    jump.hidden = false;
    jump.addEventListener('click', () => {
      const [pid, i] = DATA.first_offender;
      const det = document.getElementById('part-' + pid);
      if (det && !det.open) det.open = true;
      const t = build(pid);
      if (!t) return;
      t.bars[i].scrollIntoView({block: 'center', inline: 'center'});
      if (!pinned || pinned.pid !== pid || pinned.i !== i) select(pid, i);
    });
  }
})();
"""
