"""The dashboard's one page: plain HTML + JavaScript over the JSON API, plotly.js served by the app itself."""

from .assets import CSS, EVENT_COLORS, PROJECTION_JS, script_json

TRAIL_SNAPSHOTS = 5  # earlier snapshots drawn when the map is coloured by snapshot

PAGE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>evolens dashboard</title>
<link rel="icon" href="data:,">
<script async id="plotly-js" src="/static/plotly.min.js"></script>
<style>__CSS__</style></head>
<body>
<header><h1>evolens</h1><select id="run-select" aria-label="run"></select><span id="status">loading…</span>
<details id="compare"><summary>overlay runs</summary><div id="compare-groups"></div><div id="compare-list"></div></details></header>
<main>
<section id="alerts"><h2>Alerts and interventions</h2><div id="alerts-body" class="muted">…</div></section>
<div class="row">
<section id="projection"><h2>Evolutionary projection</h2>
<div><label>snapshot <input type="range" id="projection-slider" min="0" max="0" value="0"></label>
<span id="projection-step"></span> <button id="play">play</button>
<label>colour by <select id="projection-colour"></select></label></div>
<div id="projection-plot" style="height:520px"></div></section>
<section id="samples"><h2>Samples</h2>
<div><label>snapshot <input type="range" id="samples-slider" min="0" max="0" value="0"></label>
<span id="samples-step"></span></div>
<img id="grid" alt="samples"><div id="points-plot" style="height:420px;display:none"></div></section>
</div>
<section id="metrics"><h2>Metrics over training</h2><div id="metric-plots" class="panels"></div></section>
<section id="memorisation"><h2>Memorisation: samples beside their nearest training images</h2>
<div id="gallery" class="muted">No nearest-neighbour evidence yet (evolens proximity, or the live worker).</div></section>
<section id="summary"><h2>Run</h2><div id="summary-body" class="muted">…</div></section>
</main>
<script>__PROJECTION_JS__</script>
<script>
"use strict";
// What the page holds: the runs shown (the chosen one and those overlaid) and, per run, what it has read so far;
// every 2 s it asks each run's summary and fetches only what moved past its cursor (?since=).
const state = {run: null, compare: [], runs: [], data: {}, projection: null, frames: new Map(), playing: null,
               followSamples: true, followProjection: true, track: null, visible: new Set(), drawn: new Map(),
               renders: {}, requests: {}, t0: performance.now()};
window.__evolens = state;
const EVENT_COLORS = __EVENT_COLORS__;
const esc = s => String(s).replace(/[&<>"']/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]));
const plotlyReady = new Promise((resolve, reject) => {
  if (window.Plotly) return resolve();
  const tag = document.getElementById("plotly-js");
  tag.addEventListener("load", () => { state.renders.plotly = performance.now(); resolve(); });
  tag.addEventListener("error", () => reject(new Error("plotly.js did not load")));
});

// every request names its kind; the page never has two of a kind in flight (state.requests[kind].max says so)
async function api(path, kind) {
  const r = state.requests[kind] || (state.requests[kind] = {now: 0, max: 0, n: 0});
  r.now += 1; r.n += 1; r.max = Math.max(r.max, r.now);
  try {
    const response = await fetch(path, {cache: "no-store"});
    if (!response.ok) throw new Error(path + ": " + response.status);
    return await response.json();
  } finally { r.now -= 1; }
}
// one at a time: a call while the last one runs is remembered and run once after it (with its latest arguments)
function single(fn) {
  let running = false, queued = null;
  return async function (...args) {
    if (running) { queued = args; return; }
    running = true;
    try {
      await fn(...args);
      while (queued) { const next = queued; queued = null; await fn(...next); }
    } finally { running = false; }
  };
}
function setStatus(text) { document.getElementById("status").textContent = text; }
const shown = () => [state.run, ...state.compare.filter(id => id !== state.run)];
const runLabel = id => { const r = state.runs.find(r => r.id === id); return r ? (r.path === "." ? r.name : r.path) : id; };

async function loadRuns() {
  state.runs = await api("/api/runs", "runs");
  const select = document.getElementById("run-select");
  const current = select.value;
  select.innerHTML = state.runs.map(r => `<option value="${esc(r.id)}">${esc(r.path === "." ? r.name : r.path)}</option>`).join("");
  renderCompareChoices();
  if (!state.runs.length) { setStatus("no runs yet"); return; }
  const params = new URLSearchParams(location.search), wanted = params.get("run");
  select.value = state.runs.some(r => r.id === current) ? current : (state.runs.some(r => r.id === wanted) ? wanted : state.runs[0].id);
  if (state.run === null && params.get("compare"))
    state.compare = params.get("compare").split(",").filter(id => state.runs.some(r => r.id === id));
  if (select.value !== state.run) selectRun(select.value);
}

function renderCompareChoices() {
  const list = document.getElementById("compare-list"), groups = document.getElementById("compare-groups");
  const key = JSON.stringify([state.runs.map(r => r.id), state.run, state.compare]);
  if (list.dataset.key === key) return;
  list.dataset.key = key;
  list.textContent = ""; groups.textContent = "";
  for (const r of state.runs) {
    if (r.id === state.run) continue;
    const label = document.createElement("label"), box = document.createElement("input");
    box.type = "checkbox"; box.value = r.id; box.checked = state.compare.includes(r.id);
    box.addEventListener("change", () => setCompare(box.checked ? [...state.compare, r.id] : state.compare.filter(id => id !== r.id)));
    label.appendChild(box); label.appendChild(document.createTextNode(" " + (r.path === "." ? r.name : r.path)));
    list.appendChild(label);
  }
  // runs side by side in one folder (e.g. split-a and split-b of a biased-generalization experiment)
  const byGroup = new Map();
  for (const r of state.runs) if (r.group !== null && r.group !== undefined) {
    if (!byGroup.has(r.group)) byGroup.set(r.group, []); byGroup.get(r.group).push(r.id); }
  for (const [group, ids] of byGroup) {
    if (ids.length < 2) continue;
    const button = document.createElement("button");
    button.textContent = `overlay ${group === "." ? "top folder" : group} (${ids.length} runs)`;
    button.className = "group-button";
    button.addEventListener("click", () => { if (!ids.includes(state.run)) selectRun(ids[0], ids.slice(1)); else setCompare(ids.filter(id => id !== state.run)); });
    groups.appendChild(button);
  }
}

function setCompare(ids) {
  state.compare = [...new Set(ids)].filter(id => id !== state.run);
  renderCompareChoices();
  state.drawn.clear();
  sync();
}

function selectRun(id, compare) {
  state.run = id; state.projection = null; state.frames = new Map(); state.track = null;
  state.followSamples = state.followProjection = true;
  if (compare) state.compare = compare;
  state.compare = state.compare.filter(c => c !== id);
  document.getElementById("run-select").value = id;
  document.getElementById("metric-plots").textContent = "";
  state.drawn.clear(); state.visible.clear();
  renderCompareChoices();
  setStatus("loading " + runLabel(id) + "…");
  sync();
}

function freshData() { return {summary: null, events: [], steps: [], series: {}, panels: []}; }

// One run: its summary, then what moved since the last look (events, steps, scalar series shown).
async function syncRun(id, onSummary) {
  const s = await api(`/api/runs/${id}`, "summary:" + id);
  if (onSummary) onSummary(s);
  let d = state.data[id];
  const resumed = d && d.summary && s.cursor.session !== d.summary.cursor.session;  // a resume may log earlier steps again
  if (!d || resumed) d = state.data[id] = freshData();
  const old = d.summary;
  d.summary = s;
  if (!old || s.scalar_names.length !== old.scalar_names.length)
    d.panels = await api(`/api/runs/${id}/panels`, "panels:" + id);
  if (!old || s.cursor.event !== old.cursor.event) {
    const last = d.events.length ? d.events[d.events.length - 1].id : null;
    d.events = d.events.concat(await api(`/api/runs/${id}/events` + (last === null ? "" : "?since=" + last), "events:" + id));
  }
  if (!old || s.cursor.step !== old.cursor.step) {
    const last = d.steps.length ? d.steps[d.steps.length - 1] : null;
    d.steps = d.steps.concat(await api(`/api/runs/${id}/steps` + (last === null ? "" : "?since=" + last), "steps:" + id));
  }
  await syncScalars(id, d);
  return d;
}

// The scalar series of the panels on screen (drawn lazily): new names in full, grown ones from their last step.
async function syncScalars(id, d) {
  const wanted = new Set();
  for (const panel of d.panels) if (state.visible.has(panel.id)) {
    if (panel.overall) wanted.add(panel.overall);
    Object.values(panel.classes).forEach(n => wanted.add(n));
  }
  const last = d.summary.cursor.scalars, missing = [], grown = [];
  for (const name of wanted) {
    const have = d.series[name];
    if (!have) missing.push(name);
    else if (last[name] !== undefined && (!have.steps.length || last[name] > have.steps[have.steps.length - 1])) grown.push(name);
  }
  if (missing.length) Object.assign(d.series, await api(`/api/runs/${id}/scalars?names=${missing.map(encodeURIComponent).join(",")}`, "scalars:" + id));
  if (grown.length) {
    const since = Math.min(...grown.map(n => { const s = d.series[n].steps; return s.length ? s[s.length - 1] : -1; }));
    const fresh = await api(`/api/runs/${id}/scalars?since=${since}&names=${grown.map(encodeURIComponent).join(",")}`, "scalars:" + id);
    for (const [name, s] of Object.entries(fresh)) {
      const have = d.series[name], end = have.steps.length ? have.steps[have.steps.length - 1] : -Infinity;
      s.steps.forEach((step, i) => { if (step > end) { have.steps.push(step); have.values.push(s.values[i]); } });
      have.version = (have.version || 0) + 1;
    }
  }
  for (const name of missing) if (d.series[name]) d.series[name].version = 1;
}

function renderSummary(s) {
  const refs = s.references.map(r => `${esc(r.name)} (${r.n})`).join(", ") || "none";
  const html = `<table><tr><th>name</th><td>${esc(s.name)}</td></tr><tr><th>path</th><td>${esc(s.path)}</td></tr>` +
    `<tr><th>snapshots</th><td id="n-snapshots">${s.n_snapshots}</td></tr><tr><th>steps</th><td>${esc(s.first_step)}–${esc(s.last_step)}</td></tr>` +
    `<tr><th>sessions</th><td>${s.sessions}</td></tr><tr><th>references</th><td>${refs}</td></tr>` +
    `<tr><th>config</th><td><table class="config">` +
    s.config_rows.map(([k, v]) => `<tr><th>${esc(k)}</th><td><code>${esc(v)}</code></td></tr>`).join("") +
    `</table></td></tr></table>`;
  const body = document.getElementById("summary-body");
  if (body.dataset.html !== html) { body.innerHTML = html; body.dataset.html = html; }
}

function renderAlerts(events) {
  const rows = events.filter(e => e.listed);
  document.getElementById("alerts-body").innerHTML = rows.length ?
    "<table><tr><th>step</th><th>kind</th><th>level</th><th>message</th></tr>" + rows.map(e =>
      `<tr class="${e.style}"><td>${esc(e.step)}</td><td>${esc(e.kind)}</td><td>${esc(e.level)}</td><td>${esc(e.message)}</td></tr>`).join("") + "</table>"
    : '<span class="muted">No alerts, warnings or interventions.</span>';
}

function child(holder, id, title, className) {
  let div = document.getElementById(id);
  if (!div) { div = document.createElement("div"); div.id = id; div.className = className; holder.appendChild(div); }
  div.dataset.title = title;
  return div;
}

// Panels below the fold are drawn when they scroll into view (first render stays fast on runs with many metrics).
const panelObserver = new IntersectionObserver(entries => {
  let added = false;
  for (const e of entries) if (e.isIntersecting && !state.visible.has(e.target.id)) { state.visible.add(e.target.id); added = true; }
  if (added) sync();
}, {rootMargin: "300px"});

function allPanels() {
  const byId = new Map();
  for (const id of shown()) for (const panel of (state.data[id] || {panels: []}).panels) if (!byId.has(panel.id)) byId.set(panel.id, panel);
  return [...byId.values()];
}

// Small multiples: one panel per metric and context (views.data.metric_panels, as in the report), the runs shown
// overlaid in it, and per run the per-class series as a class x step heatmap.
function renderMetrics() {
  const holder = document.getElementById("metric-plots"), panels = allPanels(), runs = shown();
  const primary = state.data[state.run];
  if (!primary) return;
  if (!panels.length) { holder.innerHTML = '<span class="muted">No scalars yet.</span>'; return; }
  holder.querySelectorAll("span.muted").forEach(e => e.remove());
  const shapes = [], annotations = [];
  for (const e of primary.events) {
    if (e.step === null || !e.marked) continue;
    const color = EVENT_COLORS[e.style];
    shapes.push({type: "line", xref: "x", yref: "paper", x0: e.step, x1: e.step, y0: 0, y1: 1, line: {color, dash: "dash", width: 1}});
    annotations.push({x: e.step, y: 1, xref: "x", yref: "paper", text: e.kind, showarrow: false, font: {size: 10, color}, yanchor: "bottom"});
  }
  for (const panel of panels) {
    const box = child(holder, panel.id, panel.title, "panel");
    if (!box.dataset.observed) { box.dataset.observed = "1"; panelObserver.observe(box); }
    if (!state.visible.has(panel.id)) continue;
    // redraw only what changed: a key of the series versions this panel shows
    const key = JSON.stringify([runs, primary.events.length, runs.map(id => {
      const d = state.data[id]; if (!d) return null; const p = d.panels.find(q => q.id === panel.id); if (!p) return null;
      return [p.overall, Object.values(p.classes)].flat().map(n => n && d.series[n] ? [n, d.series[n].version, d.series[n].steps.length] : null); })]);
    if (state.drawn.get(panel.id) === key) continue;
    state.drawn.set(panel.id, key);
    const title = panel.title + (panel.direction ? ` (${panel.direction})` : "");
    // datarevision: the series grow in place (appended arrays), which Plotly.react would not see by reference
    const layout = {height: 300, margin: {l: 50, r: 10, t: 36, b: 36}, xaxis: {title: "step"}, shapes, annotations,
                    template: "plotly_white", title: {text: title, font: {size: 13}}, datarevision: key};
    const curves = [];
    runs.forEach((id, r) => {
      const d = state.data[id], p = d && d.panels.find(q => q.id === panel.id);
      if (p && p.overall && d.series[p.overall]) curves.push({x: d.series[p.overall].steps, y: d.series[p.overall].values,
        name: runLabel(id), mode: "lines+markers", marker: {size: 4}, line: {color: PALETTE[r % PALETTE.length]}});
    });
    if (curves.length)
      Plotly.react(child(box, panel.id + "-curve", panel.title, "metric-plot"), curves,
        {...layout, showlegend: curves.length > 1, legend: {orientation: "h", y: -0.25}}, {responsive: true, displaylogo: false});
    runs.forEach((id, r) => {
      const d = state.data[id], p = d && d.panels.find(q => q.id === panel.id);
      const classes = p ? Object.entries(p.classes).filter(([, name]) => d.series[name]) : [];
      if (!classes.length) return;
      const steps = [...new Set(classes.flatMap(([, name]) => d.series[name].steps))].sort((a, b) => a - b);
      const column = new Map(steps.map((s, i) => [s, i]));
      const z = classes.map(([, name]) => { const row = new Array(steps.length).fill(null);
        d.series[name].steps.forEach((s, i) => { row[column.get(s)] = d.series[name].values[i]; }); return row; });
      const heading = panel.title + " per class" + (runs.length > 1 ? " · " + runLabel(id) : "");
      Plotly.react(child(box, `${panel.id}-classes-${r}`, heading, "metric-heatmap"),
        [{type: "heatmap", z, x: steps, y: classes.map(([c]) => "class " + c), colorscale: "Viridis",
          reversescale: panel.direction === "lower is better", colorbar: {thickness: 10},
          hovertemplate: "step %{x}<br>%{y}<br>value %{z:.4g}<extra></extra>"}],
        {...layout, height: Math.max(220, 60 + 22 * classes.length), margin: {l: 70, r: 10, t: 36, b: 36},
         title: {text: heading, font: {size: 13}}}, {responsive: true, displaylogo: false});
    });
    if (state.renders.firstPanel === undefined) state.renders.firstPanel = performance.now();
  }
}

function setSlider(id, n, follow) {
  const slider = document.getElementById(id);
  const atEnd = +slider.value >= +slider.max;
  slider.max = Math.max(0, n - 1);
  if (follow && atEnd) slider.value = slider.max;
  return slider;
}

const showSamples = single(async function () {
  const d = state.data[state.run];
  if (!d || !d.steps.length || !["images", "points"].includes(d.summary.samples_kind)) return;
  const run = state.run, slider = document.getElementById("samples-slider");
  const step = d.steps[Math.min(+slider.value, d.steps.length - 1)];
  document.getElementById("samples-step").textContent = "step " + step;
  const img = document.getElementById("grid"), plot = document.getElementById("points-plot");
  if (d.summary.samples_kind === "points") {
    const p = await api(`/api/runs/${run}/points/${step}`, "points");
    await plotlyReady;
    const trace = p.y === null ? {x: p.x, type: "histogram", histnorm: "probability density", nbinsx: 40, name: "samples"}
                               : {x: p.x, y: p.y, mode: "markers", type: "scattergl", marker: {size: 5}, name: "samples"};
    Plotly.react(plot, [trace], {height: 400, margin: {l: 40, r: 10, t: 10, b: 30}, template: "plotly_white"}, {displaylogo: false});
    return;
  }
  const src = `/api/runs/${run}/samples/${step}.png`;
  if (img.getAttribute("src") === src) return;
  img.alt = "samples at step " + step;
  img.onerror = () => { img.alt = `the samples of step ${step} are damaged or missing (evolens verify)`;
                        document.getElementById("samples-step").textContent = `step ${step}: damaged`; };
  img.src = src;
});

function applySampleKind(kind) {
  document.getElementById("grid").style.display = kind === "images" ? "" : "none";
  document.getElementById("points-plot").style.display = kind === "points" ? "" : "none";
}

const loadGallery = single(async function (id) {
  const gallery = await api(`/api/runs/${id}/memorisation`, "memorisation");
  if (gallery && id === state.run) evolensDrawGallery(document.getElementById("gallery"), gallery);
});

// map frames kept for the slider and the trail, least recently used dropped first: a long live run's
// thousands of snapshots (~100 KB each at 5,000 points) must not pile up in the page
const MAX_FRAMES = 64;
async function frame(run, step) {
  const key = run + "@" + step;
  let value = state.frames.get(key);
  if (value === undefined) value = await api(`/api/runs/${run}/projection/${step}`, "projection-frame");
  state.frames.delete(key);
  state.frames.set(key, value);  // the most recently used last
  while (state.frames.size > MAX_FRAMES) state.frames.delete(state.frames.keys().next().value);
  return value;
}

const loadProjection = single(async function (run) {
  const d = state.data[run], has = !d || !d.summary || d.summary.has_projection;
  const meta = has ? await api(`/api/runs/${run}/projection`, "projection").catch(() => null) : null;
  if (run !== state.run) return;
  state.projection = meta;
  const plot = document.getElementById("projection-plot");
  if (!meta) { plot.innerHTML = '<p class="muted">No projection stored in this run yet.</p>'; return; }
  plot.querySelectorAll("p.muted").forEach(e => e.remove());  // the map arrived (live analysis grows it)
  setSlider("projection-slider", meta.steps.length, state.followProjection);
  await showProjection();
});

// The map first: its frame is fetched while plotly.js still loads, drawn as soon as both are there.
const showProjection = single(async function () {
  const meta = state.projection, run = state.run;
  if (!meta) return;
  const slider = document.getElementById("projection-slider"), k = Math.min(+slider.value, meta.steps.length - 1);
  const step = meta.steps[k];
  document.getElementById("projection-step").textContent = "step " + step;
  const t0 = performance.now();
  const p = await frame(run, step);
  if (state.renders.firstFrame === undefined) state.renders.firstFrame = performance.now();
  const colour = evolensFillColourSelect(document.getElementById("projection-colour"), p);
  const trail = [];
  if (colour === "snapshot") for (const s of meta.steps.slice(Math.max(0, k - __TRAIL__), k)) trail.push(await frame(run, s));
  if (!window.Plotly && run === state.run) {  // plotly.js still loading: a still picture of the map meanwhile
    evolensPreviewProjection(document.getElementById("projection-plot"), meta, meta.reference, p);
    if (state.renders.preview === undefined) state.renders.preview = performance.now();
  }
  await plotlyReady;
  if (run !== state.run) return;
  const plot = document.getElementById("projection-plot");
  await evolensDrawProjection(plot, meta, meta.reference, p, state.track, {colour, trail});
  // hover a probe: its sample; a reference point: its image; click a probe: its trajectory over the snapshots
  const d = state.data[run];
  if (d && d.summary && d.summary.samples_kind === "images")
    evolensHoverThumbnails(plot, id => id.startsWith("ref:") ? `/api/runs/${run}/projection/reference.png?point=${id.slice(4)}`
                                                             : `/api/runs/${run}/samples/${step}/probe.png?probe=${encodeURIComponent(id)}`);
  evolensFollowProbeOnClick(plot, id => api(`/api/runs/${run}/projection/track?probe=${encodeURIComponent(id)}`, "track"),
                            track => { state.track = track; showProjection(); });
  state.renders.projection = {step, ms: performance.now() - t0, points: p.x.length, colour};
  if (state.renders.first === undefined) state.renders.first = performance.now();
});

// The poll: every shown run's summary, and what moved. One at a time; a call while one runs is run after it.
const sync = single(async function () {
  try { await syncShown(); } catch (e) { setStatus("error: " + e.message); }
});
async function syncShown() {
  if (!state.run) return;
  const id = state.run, runs = shown();
  const before = state.data[id] && state.data[id].summary;
  const firstLook = !before;
  // the map first: on the first look its meta is asked as soon as the summary says there is one
  let mapEarly = null;
  for (const r of runs) await syncRun(r, r === id && firstLook ? (s => { if (s.has_projection) mapEarly = loadProjection(id); }) : null);
  if (id !== state.run) return;
  const d = state.data[id], s = d.summary;
  if (firstLook && !s.has_projection) loadProjection(id);
  renderSummary(s);
  renderAlerts(d.events);
  applySampleKind(s.samples_kind);
  setSlider("samples-slider", d.steps.length, state.followSamples);
  showSamples();
  if (!firstLook && s.has_projection && (!state.projection || s.projection_steps !== state.projection.steps.length))
    loadProjection(id);  // the live worker grows the map snapshot by snapshot
  if (mapEarly) await mapEarly;
  await plotlyReady;
  renderMetrics();
  if (firstLook || s.cursor.step !== before.cursor.step) loadGallery(id);
  const lag = s.analysis_lag === null ? "" : ` · live analysis ${s.analysis_lag ? s.analysis_lag + " behind" : "up to date"}`;
  const overlay = runs.length > 1 ? ` · ${runs.length} runs overlaid` : "";
  setStatus(`${s.n_snapshots} snapshots · last step ${s.last_step}${lag}${overlay} · updated ${new Date().toLocaleTimeString()}`);
}

document.getElementById("run-select").addEventListener("change", e => selectRun(e.target.value));
document.getElementById("samples-slider").addEventListener("input", e => {
  state.followSamples = +e.target.value >= +e.target.max; showSamples(); });
document.getElementById("projection-slider").addEventListener("input", e => {
  state.followProjection = +e.target.value >= +e.target.max; showProjection(); });
document.getElementById("projection-colour").addEventListener("change", () => showProjection());
document.getElementById("play").addEventListener("click", () => {
  const button = document.getElementById("play");
  if (state.playing) { clearInterval(state.playing); state.playing = null; button.textContent = "play"; return; }
  button.textContent = "pause";
  state.playing = setInterval(() => {
    const s = document.getElementById("projection-slider");
    s.value = (+s.value + 1) % (+s.max + 1); showProjection();
  }, 500);
});
const poll = single(async () => { await loadRuns(); await sync(); });
poll().catch(e => setStatus("error: " + e.message));
setInterval(() => poll().catch(e => setStatus("error: " + e.message)), 2000);
</script>
</body></html>
""".replace("__PROJECTION_JS__", PROJECTION_JS).replace("__TRAIL__", str(TRAIL_SNAPSHOTS)) \
    .replace("__EVENT_COLORS__", script_json(EVENT_COLORS)).replace("__CSS__", CSS)
