"use strict";
const DATA = JSON.parse(document.getElementById("lb-data").textContent);
const BOARDS = Object.fromEntries(DATA.boards.map(b => [b.id, b]));
const COLOURS = __COLOURS__;  // from the method registry (vlm_peft_bench/methods/table.py)
const NS = "http://www.w3.org/2000/svg";
const state = {group: DATA.groups.length ? DATA.groups[0].id : null, methods: new Set(DATA.rows.map(r => r.method)),
               sortKey: null, sortDir: 1};

function colour(m) { return COLOURS[m] || __OTHER_COLOUR__; }
function pct(f) { return f === null || f === undefined ? "n/a" : (f === 0 ? "0" : (100 * f).toPrecision(4).replace(/\.?0+$/, "") + "%"); }
function num(v) { return v === null || v === undefined ? "n/a" : v.toFixed(3); }
function count(v) { return v === null || v === undefined ? "n/a" : v.toLocaleString("en-US"); }
function withCi(m) {
  if (!m || m.value === null) { return "n/a" + (m && m.note ? " (" + m.note.split(":")[0] + ")" : ""); }
  return num(m.value) + (m.ci95 && m.ci95[0] !== null ? " (" + num(m.ci95[0]) + "-" + num(m.ci95[1]) + ")" : "");
}
function group() { return DATA.groups.find(g => g.id === state.group); }
function el(tag, attrs, text) {
  const e = tag.startsWith("svg:") ? document.createElementNS(NS, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) { e.setAttribute(k, v); }
  if (text !== undefined) { e.textContent = text; }
  return e;
}

function columns(g) {
  const cell = r => r.cells[g.id];
  const cols = [
    {key: "kind", label: "kind", get: r => r.kind, show: r => r.kind === "reported" ? "reported" : "measured"},
    {key: "method", label: "method", get: r => r.method},
    {key: "adapter", label: "adapter", get: r => r.adapter_id || r.label},
    {key: "trainable", label: "trainable", num: true, get: r => r.params.trainable, show: r => count(r.params.trainable)},
    {key: "total", label: "total", num: true, get: r => r.params.total, show: r => count(r.params.total)},
    {key: "fraction", label: "fraction", num: true, get: r => r.params.fraction, show: r => pct(r.params.fraction)},
  ];
  if (DATA.rows.some(r => r.params.derived)) {  // steering vectors: derived (computed, not trained) parameters
    cols.push({key: "derived", label: "derived", num: true, get: r => r.params.derived, show: r => count(r.params.derived)});
  }
  for (const m of g.metrics) {
    cols.push({key: "m:" + m, label: m + (m === g.headline ? (g.ci ? " (95% CI)" : "") : ""), num: true,
               get: r => cell(r).metrics[m].value, show: r => withCi(cell(r).metrics[m])});
  }
  cols.push({key: "pareto", label: "Pareto", get: r => cell(r).pareto ? 1 : 0, show: r => cell(r).pareto ? "\u2605" : ""});
  if (g.kind === "measured") {
    cols.push({key: "repr", label: "eff. rank ratio", num: true,
               get: r => cell(r).repr_rank ? cell(r).repr_rank.effective_rank_ratio : null,
               show: r => cell(r).repr_rank ? cell(r).repr_rank.effective_rank_ratio.toFixed(3) : "n/a"});
    cols.push({key: "n", label: "n", num: true, get: r => cell(r).n, show: r => count(cell(r).n)});
  }
  cols.push({key: "date", label: "date", get: r => r.date});
  cols.push({key: "hash", label: "adapter sha256", get: r => (r.adapter_hash || "").slice(0, 12)});
  return cols;
}

function visibleRows(g) {
  return DATA.rows.filter(r => r.cells[g.id] && state.methods.has(r.method));
}

function sortedRows(g, cols) {
  const rows = visibleRows(g);
  const col = cols.find(c => c.key === state.sortKey);
  if (!col) { return rows; }
  return rows.slice().sort((a, b) => {
    const x = col.get(a), y = col.get(b);
    if (x === null || x === undefined) { return (y === null || y === undefined) ? 0 : 1; }
    if (y === null || y === undefined) { return -1; }
    const c = col.num ? x - y : String(x).localeCompare(String(y));
    return c * state.sortDir || a.id.localeCompare(b.id);
  });
}

function details(r, g) {
  const c = r.cells[g.id], m = c.metrics[g.headline];
  const lines = [(r.kind === "reported" ? "[REPORTED] " : "") + (r.adapter_id || r.label), "method: " + r.method,
    "trainable: " + count(r.params.trainable) + " of " + count(r.params.total) + " (" + pct(r.params.fraction) + ")" +
      (r.params.derived ? "; derived: " + count(r.params.derived) + " (plotted at " + pct(r.params.plotted) + ")" : ""),
    g.headline + ": " + withCi(m), "Pareto frontier: " + (c.pareto ? "yes" : "no"), "date: " + r.date];
  if (c.repr_rank) { lines.push("effective rank ratio: " + c.repr_rank.effective_rank_ratio.toFixed(3)); }
  if (r.kind === "reported") { const s = BOARDS[r.board].source; lines.push("source: " + s.title + " (" + s.year + ")"); }
  return lines.join("\n");
}

function renderTable(g) {
  const cols = columns(g);
  const thead = document.querySelector("#board thead"), tbody = document.querySelector("#board tbody");
  thead.textContent = ""; tbody.textContent = "";
  const tr = el("tr");
  for (const c of cols) {
    const th = el("th", {"data-key": c.key, scope: "col"}, c.label);
    if (c.key === state.sortKey) { th.setAttribute("aria-sort", state.sortDir > 0 ? "ascending" : "descending"); }
    th.addEventListener("click", () => {
      state.sortDir = state.sortKey === c.key ? -state.sortDir : 1;
      state.sortKey = c.key;
      render();
    });
    tr.appendChild(th);
  }
  thead.appendChild(tr);
  for (const r of sortedRows(g, cols)) {
    const row = el("tr", {"data-row": r.id, class: r.kind === "reported" ? "reported" : ""});
    for (const c of cols) {
      const td = el("td", {class: c.num ? "num" : "", "data-key": c.key}, c.show ? c.show(r) : String(c.get(r) ?? ""));
      if (c.key === "kind" && r.kind === "reported") { td.textContent = ""; td.appendChild(el("span", {class: "tag"}, "reported")); }
      row.appendChild(td);
    }
    row.addEventListener("mouseenter", () => highlight(r.id, true));
    row.addEventListener("mouseleave", () => highlight(r.id, false));
    tbody.appendChild(row);
  }
}

function highlight(id, on) {
  for (const e of document.querySelectorAll('[data-row="' + CSS.escape(id) + '"]')) { e.classList.toggle("hl", on); }
}

function renderPlot(g) {
  const svg = document.getElementById("plot");
  svg.textContent = "";
  const W = +svg.getAttribute("width"), H = +svg.getAttribute("height"), L = 70, R = 20, T = 30, B = 50;
  const pts = [];
  let unplotted = 0;
  for (const r of visibleRows(g)) {
    const m = r.cells[g.id].metrics[g.headline];
    const x = r.params.plotted === undefined ? r.params.fraction : r.params.plotted;
    if (x === null || m.value === null) { unplotted += 1; continue; }
    pts.push({r: r, x: x, y: m.value, ci: m.ci95, pareto: r.cells[g.id].pareto});
  }
  document.getElementById("unplotted").textContent = unplotted ? unplotted + " row(s) without a known fraction or score are listed but not plotted." : "";
  const positive = pts.map(p => p.x).filter(x => x > 0);
  const floor = positive.length ? Math.pow(10, Math.floor(Math.log10(Math.min(...positive))) - 1) : 1e-4;
  for (const p of pts) { p.px = p.x > 0 ? p.x : floor; }
  const xs = pts.length ? pts.map(p => p.px) : [floor];
  const lo = Math.floor(Math.log10(Math.min(...xs)));
  const hi = Math.max(Math.ceil(Math.log10(Math.max(...xs))), lo + 1);
  const ys = pts.flatMap(p => [p.y].concat(p.ci && p.ci[0] !== null ? p.ci : []));
  let ymin = ys.length ? Math.min(...ys) : 0, ymax = ys.length ? Math.max(...ys) : 1;
  if (ymax - ymin < 1e-9) { ymin -= 0.05; ymax += 0.05; }
  const pad = (ymax - ymin) * 0.08; ymin -= pad; ymax += pad;
  const sx = x => L + (Math.log10(x) - (lo - 0.3)) / ((hi + 0.3) - (lo - 0.3)) * (W - L - R);
  const sy = y => T + (ymax - y) / (ymax - ymin) * (H - T - B);
  svg.appendChild(el("svg:line", {x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#444"}));
  svg.appendChild(el("svg:line", {x1: L, y1: T, x2: L, y2: H - B, stroke: "#444"}));
  const hasBase = pts.some(p => p.x === 0);
  for (let e = lo; e <= hi; e++) {
    const x = sx(Math.pow(10, e));
    svg.appendChild(el("svg:line", {x1: x, y1: T, x2: x, y2: H - B, stroke: "#eee"}));
    const label = hasBase && Math.abs(Math.pow(10, e) - floor) < floor * 1e-9 ? "0 (base)" : pct(Math.pow(10, e));
    svg.appendChild(el("svg:text", {x: x, y: H - B + 16, "text-anchor": "middle"}, label));
  }
  for (let i = 0; i <= 4; i++) {
    const v = ymin + (ymax - ymin) * i / 4, y = sy(v);
    svg.appendChild(el("svg:line", {x1: L, y1: y, x2: W - R, y2: y, stroke: "#eee"}));
    svg.appendChild(el("svg:text", {x: L - 6, y: y + 4, "text-anchor": "end"}, v.toFixed(3)));
  }
  svg.appendChild(el("svg:text", {x: (L + W - R) / 2, y: H - 10, "text-anchor": "middle"}, "trainable (squares: derived) fraction of parameters (log scale)"));
  svg.appendChild(el("svg:text", {x: 14, y: (T + H - B) / 2, "text-anchor": "middle", transform: "rotate(-90 14 " + (T + H - B) / 2 + ")"},
                     g.headline + (g.kind === "reported" ? " (as published)" : "")));
  svg.appendChild(el("svg:text", {x: L, y: 18}, g.label + " \u2014 " + BOARDS[g.board].label));
  const front = pts.filter(p => p.pareto).sort((a, b) => a.px - b.px || a.y - b.y);
  if (front.length) {
    let d = "M" + sx(front[0].px) + "," + sy(front[0].y);
    for (let i = 1; i < front.length; i++) { d += " H" + sx(front[i].px) + " V" + sy(front[i].y); }
    svg.appendChild(el("svg:path", {d: d, fill: "none", stroke: "#000", "stroke-dasharray": "5 3", class: "frontier"}));
  }
  const tip = document.getElementById("tooltip");
  for (const p of pts) {
    const c = colour(p.r.method);
    if (p.ci && p.ci[0] !== null) {
      svg.appendChild(el("svg:line", {x1: sx(p.px), x2: sx(p.px), y1: sy(p.ci[0]), y2: sy(p.ci[1]), stroke: c, "stroke-opacity": 0.5}));
    }
    const reported = p.r.kind === "reported";
    const derived = !!p.r.params.derived && !p.r.params.trainable;  // a steering vector: drawn as a square
    const size = p.pareto ? 6 : 4.5;
    const shape = derived ? el("svg:rect", {x: sx(p.px) - size, y: sy(p.y) - size, width: 2 * size, height: 2 * size})
                          : el("svg:circle", {cx: sx(p.px), cy: sy(p.y), r: size});
    const attrs = {"data-row": p.r.id, class: "point" + (reported ? " reported" : "") + (derived ? " derived" : "") +
      (p.pareto ? " pareto" : ""), fill: reported ? "none" : c, stroke: p.pareto ? "#000" : c,
      "stroke-width": reported ? 2 : 1.2};
    for (const [k, v] of Object.entries(attrs)) { shape.setAttribute(k, v); }
    const circle = shape;
    circle.appendChild(el("svg:title", {}, details(p.r, g)));
    circle.addEventListener("mousemove", ev => {
      const box = document.getElementById("plotwrap").getBoundingClientRect();
      tip.textContent = details(p.r, g); tip.style.display = "block";
      tip.style.left = (ev.clientX - box.left + 12) + "px"; tip.style.top = (ev.clientY - box.top + 12) + "px";
      highlight(p.r.id, true);
    });
    circle.addEventListener("mouseleave", () => { tip.style.display = "none"; highlight(p.r.id, false); });
    svg.appendChild(circle);
    svg.appendChild(el("svg:text", {x: sx(p.px) + 7, y: sy(p.y) - 6, fill: c}, p.r.method + (reported ? " (reported)" : "")));
  }
}

function renderRepr(g) {
  const svg = document.getElementById("reprplot"), wrap = document.getElementById("reprwrap");
  svg.textContent = "";
  const rows = visibleRows(g).filter(r => r.cells[g.id].repr_rank);
  wrap.style.display = rows.length ? "" : "none";
  if (!rows.length) { return; }
  const W = +svg.getAttribute("width"), H = +svg.getAttribute("height"), L = 50, R = 230, T = 10, B = 40;
  const sx = x => L + x * (W - L - R), sy = y => T + (1 - y) * (H - T - B);
  svg.appendChild(el("svg:line", {x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#444"}));
  svg.appendChild(el("svg:line", {x1: L, y1: T, x2: L, y2: H - B, stroke: "#444"}));
  for (let i = 0; i <= 4; i++) {
    svg.appendChild(el("svg:text", {x: sx(i / 4), y: H - B + 16, "text-anchor": "middle"}, (i / 4).toFixed(2)));
    svg.appendChild(el("svg:text", {x: L - 6, y: sy(i / 4) + 4, "text-anchor": "end"}, (i / 4).toFixed(2)));
  }
  svg.appendChild(el("svg:line", {x1: L, x2: W - R, y1: sy(0.9), y2: sy(0.9), stroke: "#000", "stroke-dasharray": "2 3"}));
  svg.appendChild(el("svg:text", {x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle"}, "fraction of dimensions k / d"));
  rows.forEach((r, i) => {
    const rr = r.cells[g.id].repr_rank, d = rr.cumulative.length;
    const pts = [[0, 0]].concat(rr.cumulative.map((c, k) => [(k + 1) / d, c]));
    const line = el("svg:polyline", {points: pts.map(p => sx(p[0]) + "," + sy(p[1])).join(" "), fill: "none",
      stroke: colour(r.method), "stroke-width": 1.5, class: "curve", "data-row": r.id});
    line.appendChild(el("svg:title", {}, (r.adapter_id || r.label) + ": effective rank ratio " +
      rr.effective_rank_ratio.toFixed(3) + " (" + rr.effective_rank + " of " + rr.hidden_size + ", n " + rr.n + ")"));
    svg.appendChild(line);
    svg.appendChild(el("svg:text", {x: W - R + 8, y: T + 14 + 16 * i, fill: colour(r.method)},
      r.method + " " + rr.effective_rank_ratio.toFixed(3)));
  });
}

// One chart and table per sweep file (vlm-peft-bench sweep): test score with its 95% interval, training and
// held-out score, against the swept setting; the untrained base's test score as a line.
function renderSweeps() {
  const box = document.getElementById("sweeps");
  const sweeps = DATA.sweeps || [];
  if (!sweeps.length) { return; }
  box.appendChild(el("h2", {}, "Sweeps"));
  sweeps.forEach((s, n) => {
    const wrap = el("div", {class: "sweep", "data-sweep": s.file});
    wrap.appendChild(el("h3", {}, s.recipe + " on " + s.task + ": " + s.metric + " against " + s.axis_label));
    const svg = el("svg:svg", {width: 760, height: 300, role: "img", id: "sweep-" + n,
                               "aria-label": s.metric + " against " + s.axis_label});
    const W = 760, H = 300, L = 50, R = 170, T = 10, B = 40, pts = s.points;
    const ys = pts.flatMap(p => [p.ci95[0], p.ci95[1], p.train, p.held_out]).concat(
      s.base_test ? [s.base_test.value] : []).filter(v => v !== null && v !== undefined);
    const lo = Math.max(0, Math.floor(Math.min(...ys) * 20) / 20), hi = Math.min(1, Math.ceil(Math.max(...ys) * 20) / 20);
    const xs = pts.map(p => p.value), x0 = Math.min(...xs), x1 = Math.max(...xs);
    const sx = x => L + (x1 === x0 ? 0.5 : (x - x0) / (x1 - x0)) * (W - L - R);
    const sy = y => T + (1 - (y - lo) / ((hi - lo) || 1)) * (H - T - B);
    svg.appendChild(el("svg:line", {x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#444"}));
    svg.appendChild(el("svg:line", {x1: L, y1: T, x2: L, y2: H - B, stroke: "#444"}));
    for (const x of xs) { svg.appendChild(el("svg:text", {x: sx(x), y: H - B + 16, "text-anchor": "middle"}, String(x))); }
    for (let i = 0; i <= 4; i++) {
      const y = lo + (hi - lo) * i / 4;
      svg.appendChild(el("svg:text", {x: L - 6, y: sy(y) + 4, "text-anchor": "end"}, y.toFixed(2)));
    }
    svg.appendChild(el("svg:text", {x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle"}, s.axis_label));
    if (s.base_test) {
      svg.appendChild(el("svg:line", {x1: L, x2: W - R, y1: sy(s.base_test.value), y2: sy(s.base_test.value),
                                      stroke: "#d62728", class: "base"}));
    }
    const lines = [["test", "#1f4e79", ""], ["train", "#7f7f7f", "6 3"], ["held_out", "#2ca02c", "2 3"]];
    lines.forEach(([key, c, dash], i) => {
      const shown = pts.filter(p => p[key] !== null && p[key] !== undefined);
      svg.appendChild(el("svg:polyline", {points: shown.map(p => sx(p.value) + "," + sy(p[key])).join(" "),
        fill: "none", stroke: c, "stroke-width": 1.5, "stroke-dasharray": dash, class: "line-" + key}));
      svg.appendChild(el("svg:text", {x: W - R + 8, y: T + 14 + 16 * i, fill: c},
        {test: "test (95% interval)", train: "train", held_out: "held-out"}[key]));
    });
    if (s.base_test) { svg.appendChild(el("svg:text", {x: W - R + 8, y: T + 14 + 48, fill: "#d62728"}, "untrained base")); }
    for (const p of pts) {
      svg.appendChild(el("svg:line", {x1: sx(p.value), x2: sx(p.value), y1: sy(p.ci95[0]), y2: sy(p.ci95[1]),
                                      stroke: "#1f4e79", opacity: 0.6}));
      const dot = el("svg:circle", {cx: sx(p.value), cy: sy(p.test), r: 4, fill: "#1f4e79", class: "point"});
      dot.appendChild(el("svg:title", {}, s.axis.replace("_", " ") + " " + p.value + ": test " + num(p.test) + " (" +
        num(p.ci95[0]) + "-" + num(p.ci95[1]) + "), train " + num(p.train) + ", held-out " + num(p.held_out) +
        ", " + count(p.trainable) + " trainable (" + pct(p.fraction) + ")"));
      svg.appendChild(dot);
    }
    wrap.appendChild(svg);
    const table = el("table", {class: "sweep-table"});
    const head = el("tr");
    for (const h of [s.axis.replace("_", " "), "trainable", "fraction", "train", "held-out", "test (95% CI)"]) { head.appendChild(el("th", {}, h)); }
    table.appendChild(head);
    for (const p of pts) {
      const tr = el("tr");
      for (const v of [String(p.value), count(p.trainable), pct(p.fraction), num(p.train), num(p.held_out),
                       num(p.test) + " (" + num(p.ci95[0]) + "-" + num(p.ci95[1]) + ")"]) { tr.appendChild(el("td", {}, v)); }
      table.appendChild(tr);
    }
    wrap.appendChild(table);
    wrap.appendChild(el("p", {class: "sub"}, "Base " + s.base + ", seed " + s.seed + (s.base_test ? "; untrained base on the test split " +
      num(s.base_test.value) + " (" + num(s.base_test.ci95[0]) + "-" + num(s.base_test.ci95[1]) + ")" : "") + ". From " + s.file + "."));
    box.appendChild(wrap);
  });
}

function renderMeta(g) {
  const b = BOARDS[g.board];
  const meta = document.getElementById("meta");
  if (b.kind === "reported") {
    const s = b.source;
    meta.textContent = "REPORTED, not measured here: " + s.authors + ", " + s.title + " (" + s.year + "). " +
      (s.where ? s.where + ". " : "") + "Setting: " + s.setting + "." + (s.note ? " " + s.note : "");
    if (s.url) { meta.appendChild(document.createTextNode(" ")); meta.appendChild(el("a", {href: s.url}, s.url)); }
  } else {
    meta.textContent = "Base " + b.base.name + " (sha256 " + (b.base.hash || "unknown").slice(0, 12) + "); prompt " +
      JSON.stringify(b.prompt_template) + ".";
  }
  document.querySelector("#settings pre").textContent = JSON.stringify(g.fingerprint, null, 2);
}

function render() {
  const g = group();
  if (!g) { document.getElementById("meta").textContent = "No results."; return; }
  renderMeta(g); renderPlot(g); renderRepr(g); renderTable(g);
}

function setup() {
  const select = document.getElementById("task");
  for (const g of DATA.groups) {
    select.appendChild(el("option", {value: g.id}, g.label + " \u2014 " + BOARDS[g.board].label));
  }
  select.addEventListener("change", () => { state.group = select.value; state.sortKey = null; render(); });
  const box = document.getElementById("methods");
  for (const m of [...new Set(DATA.rows.map(r => r.method))].sort()) {
    const input = el("input", {type: "checkbox", value: m, checked: ""});
    input.addEventListener("change", () => { input.checked ? state.methods.add(m) : state.methods.delete(m); render(); });
    const label = el("label"); label.appendChild(input); label.appendChild(document.createTextNode(" " + m));
    box.appendChild(label);
  }
  for (const [k, v] of Object.entries(DATA.definitions).sort()) { document.getElementById("defs").appendChild(el("li", {}, k + ": " + v)); }
  for (const n of DATA.notes) { document.getElementById("notes").appendChild(el("li", {}, n)); }
  if (!DATA.notes.length) { document.getElementById("notes").appendChild(el("li", {}, "none")); }
  renderSweeps();
  render();
  document.body.setAttribute("data-ready", "1");
}
setup();
