"""The dashboard's one page: plain HTML + JavaScript over the JSON API, plotly.js served by the app itself."""

from .assets import CSS, EVENT_COLORS, PROJECTION_JS, script_json
from .data import MARKED_EVENT_KINDS

PAGE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>evolens dashboard</title>
<link rel="icon" href="data:,">
<script src="/static/plotly.min.js"></script>
<style>__CSS__</style></head>
<body>
<header><h1>evolens</h1><select id="run-select" aria-label="run"></select><span id="status">loading…</span></header>
<main>
<section id="summary"><h2>Run</h2><div id="summary-body" class="muted">…</div></section>
<section id="alerts"><h2>Alerts and interventions</h2><div id="alerts-body" class="muted">…</div></section>
<section id="metrics"><h2>Metrics over training</h2><div id="metric-plots"></div></section>
<div class="row">
<section id="projection"><h2>Evolutionary projection</h2>
<div><label>snapshot <input type="range" id="projection-slider" min="0" max="0" value="0"></label>
<span id="projection-step"></span> <button id="play">play</button></div>
<div id="projection-plot" style="height:520px"></div></section>
<section id="samples"><h2>Samples</h2>
<div><label>snapshot <input type="range" id="samples-slider" min="0" max="0" value="0"></label>
<span id="samples-step"></span></div>
<img id="grid" alt="samples"><div id="points-plot" style="height:420px;display:none"></div></section>
</div>
<section id="memorisation"><h2>Memorisation: samples beside their nearest training images</h2>
<div id="gallery" class="muted">No nearest-neighbour evidence yet (evolens proximity, or the live worker).</div></section>
</main>
<script>__PROJECTION_JS__</script>
<script>
"use strict";
const state = {run: null, summary: null, steps: [], projection: null, playing: null, followSamples: true,
               followProjection: true, renders: {}};
window.__evolens = state;
const MARKED = new Set(__MARKED__);
const EVENT_COLORS = __EVENT_COLORS__;
const esc = s => String(s).replace(/[&<>"']/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]));
async function api(path) {
  const r = await fetch(path, {cache: "no-store"});
  if (!r.ok) throw new Error(path + ": " + r.status);
  return r.json();
}
function setStatus(text) { document.getElementById("status").textContent = text; }

async function loadRuns() {
  const runs = await api("/api/runs");
  const select = document.getElementById("run-select");
  const current = select.value;
  select.innerHTML = runs.map(r => `<option value="${esc(r.id)}">${esc(r.path === "." ? r.name : r.path)}</option>`).join("");
  if (!runs.length) { setStatus("no runs yet"); return; }
  const wanted = new URLSearchParams(location.search).get("run");
  select.value = runs.some(r => r.id === current) ? current : (runs.some(r => r.id === wanted) ? wanted : runs[0].id);
  if (select.value !== state.run) await selectRun(select.value);
}

async function selectRun(id) {
  state.run = id; state.summary = null; state.projection = null; state.steps = []; state.track = null;
  state.followSamples = state.followProjection = true;
  document.getElementById("metric-plots").innerHTML = "";
  await refresh(true);
}

function renderSummary(s) {
  const refs = s.references.map(r => `${esc(r.name)} (${r.n})`).join(", ") || "none";
  document.getElementById("summary-body").innerHTML =
    `<table><tr><th>name</th><td>${esc(s.name)}</td></tr><tr><th>path</th><td>${esc(s.path)}</td></tr>` +
    `<tr><th>snapshots</th><td id="n-snapshots">${s.n_snapshots}</td></tr><tr><th>steps</th><td>${esc(s.first_step)}–${esc(s.last_step)}</td></tr>` +
    `<tr><th>sessions</th><td>${s.sessions}</td></tr><tr><th>references</th><td>${refs}</td></tr>` +
    `<tr><th>config</th><td><table class="config">` +
    s.config_rows.map(([k, v]) => `<tr><th>${esc(k)}</th><td><code>${esc(v)}</code></td></tr>`).join("") +
    `</table></td></tr></table>`;
}

function renderAlerts(events) {
  const rows = events.filter(e => ["alert","warning","error"].includes(e.level) || (MARKED.has(e.kind) && e.kind !== "alert"));
  document.getElementById("alerts-body").innerHTML = rows.length ?
    "<table><tr><th>step</th><th>kind</th><th>level</th><th>message</th></tr>" + rows.map(e =>
      `<tr class="${e.level === "alert" ? "alert" : (e.kind === "intervention" ? "intervention" : "warning")}"><td>${esc(e.step)}</td><td>${esc(e.kind)}</td><td>${esc(e.level)}</td><td>${esc(e.message)}</td></tr>`).join("") + "</table>"
    : '<span class="muted">No alerts, warnings or interventions.</span>';
}

function panelDiv(holder, id, title, className) {
  let div = document.getElementById(id);
  if (!div) { div = document.createElement("div"); div.id = id; div.className = className; div.dataset.title = title; holder.appendChild(div); }
  return div;
}

// Small multiples: one panel per metric and context (the server's views.data.metric_panels, as in the report):
// the overall curve, and the per-class series as a class x step heatmap beside it.
function renderMetrics(series, events, panels) {
  const holder = document.getElementById("metric-plots");
  const shapes = [], annotations = [];
  for (const e of events) {
    if (e.step === null || !(MARKED.has(e.kind) || e.level === "alert")) continue;
    const color = EVENT_COLORS[e.kind === "intervention" ? "intervention" : (e.level === "alert" ? "alert" : "other")];
    shapes.push({type: "line", xref: "x", yref: "paper", x0: e.step, x1: e.step, y0: 0, y1: 1, line: {color, dash: "dash", width: 1}});
    annotations.push({x: e.step, y: 1, xref: "x", yref: "paper", text: e.kind, showarrow: false, font: {size: 10, color}, yanchor: "bottom"});
  }
  if (!panels.length) { holder.innerHTML = '<span class="muted">No scalars yet.</span>'; return; }
  holder.classList.add("panels");
  for (const panel of panels) {
    const box = panelDiv(holder, panel.id, panel.title, "panel");
    const title = panel.title + (panel.direction ? ` (${panel.direction})` : "");
    const layout = {height: 300, margin: {l: 50, r: 10, t: 36, b: 36}, xaxis: {title: "step"}, shapes, annotations,
                    template: "plotly_white", title: {text: title, font: {size: 13}}};
    if (panel.overall && series[panel.overall]) {
      const s = series[panel.overall];
      Plotly.react(panelDiv(box, panel.id + "-curve", panel.title, "metric-plot"),
        [{x: s.steps, y: s.values, name: panel.title, mode: "lines+markers", marker: {size: 4}}],
        {...layout, showlegend: false}, {responsive: true, displaylogo: false});
    }
    const classes = Object.entries(panel.classes).filter(([, name]) => series[name]);
    if (classes.length) {
      const steps = [...new Set(classes.flatMap(([, name]) => series[name].steps))].sort((a, b) => a - b);
      const column = new Map(steps.map((s, i) => [s, i]));
      const z = classes.map(([, name]) => { const row = new Array(steps.length).fill(null);
        series[name].steps.forEach((s, i) => { row[column.get(s)] = series[name].values[i]; }); return row; });
      Plotly.react(panelDiv(box, panel.id + "-classes", panel.title + " per class", "metric-heatmap"),
        [{type: "heatmap", z, x: steps, y: classes.map(([c]) => "class " + c), colorscale: "Viridis",
          reversescale: panel.direction === "lower is better", colorbar: {thickness: 10},
          hovertemplate: "step %{x}<br>%{y}<br>value %{z:.4g}<extra></extra>"}],
        {...layout, height: Math.max(220, 60 + 22 * classes.length), margin: {l: 70, r: 10, t: 36, b: 36},
         title: {text: panel.title + " per class", font: {size: 13}}}, {responsive: true, displaylogo: false});
    }
  }
}

function setSlider(id, n, follow) {
  const slider = document.getElementById(id);
  const atEnd = +slider.value >= +slider.max;
  slider.max = Math.max(0, n - 1);
  if (follow && atEnd) slider.value = slider.max;
  return slider;
}

async function showSamples() {
  if (!state.steps.length || !["images", "points"].includes(state.summary.samples_kind)) return;
  const slider = document.getElementById("samples-slider");
  const step = state.steps[Math.min(+slider.value, state.steps.length - 1)];
  document.getElementById("samples-step").textContent = "step " + step;
  const img = document.getElementById("grid"), plot = document.getElementById("points-plot");
  if (state.samplesArePoints) {
    const p = await api(`/api/runs/${state.run}/points/${step}`);
    const trace = p.y === null ? {x: p.x, type: "histogram", histnorm: "probability density", nbinsx: 40, name: "samples"}
                               : {x: p.x, y: p.y, mode: "markers", type: "scattergl", marker: {size: 5}, name: "samples"};
    Plotly.react(plot, [trace], {height: 400, margin: {l: 40, r: 10, t: 10, b: 30}, template: "plotly_white"}, {displaylogo: false});
    return;
  }
  img.alt = "samples at step " + step;
  img.onerror = () => { img.alt = `the samples of step ${step} are damaged or missing (evolens verify)`;
                        document.getElementById("samples-step").textContent = `step ${step}: damaged`; };
  img.src = `/api/runs/${state.run}/samples/${step}.png`;
}

function applySampleKind(kind) {
  state.samplesArePoints = kind === "points";
  document.getElementById("grid").style.display = kind === "images" ? "" : "none";
  document.getElementById("points-plot").style.display = state.samplesArePoints ? "" : "none";
}

let galleryInFlight = false;
async function loadGallery(id) {
  if (galleryInFlight) return;  // never more than one request of a kind in flight
  galleryInFlight = true;
  try {
    const gallery = await api(`/api/runs/${id}/memorisation`);
    if (gallery && id === state.run) evolensDrawGallery(document.getElementById("gallery"), gallery);
  } finally { galleryInFlight = false; }
}

async function loadProjection() {
  state.projection = state.summary.has_projection ? await api(`/api/runs/${state.run}/projection`) : null;
  const plot = document.getElementById("projection-plot");
  if (!state.projection) { plot.innerHTML = '<p class="muted">No projection stored in this run yet.</p>'; return; }
  plot.querySelectorAll("p.muted").forEach(e => e.remove());  // the map arrived (live analysis grows it)
  setSlider("projection-slider", state.projection.steps.length, true);
  await showProjection();
}

async function showProjection() {
  const meta = state.projection;
  if (!meta) return;
  const slider = document.getElementById("projection-slider");
  const step = meta.steps[Math.min(+slider.value, meta.steps.length - 1)];
  document.getElementById("projection-step").textContent = "step " + step;
  const t0 = performance.now();
  const p = await api(`/api/runs/${state.run}/projection/${step}`);
  const plot = document.getElementById("projection-plot");
  await evolensDrawProjection(plot, meta, meta.reference, p, state.track);
  const run = state.run;  // hover a probe: its sample; click it: its trajectory over every snapshot of the map
  if (state.summary && state.summary.samples_kind === "images")
    evolensHoverThumbnails(plot, id => `/api/runs/${run}/samples/${step}/probe.png?probe=${encodeURIComponent(id)}`);
  evolensFollowProbeOnClick(plot, id => api(`/api/runs/${run}/projection/track?probe=${encodeURIComponent(id)}`),
                            track => { state.track = track; showProjection(); });
  state.renders.projection = {step, ms: performance.now() - t0, points: p.x.length};
  if (state.renders.first === undefined) state.renders.first = performance.now();
}

async function refresh(full) {
  if (!state.run) return;
  const id = state.run;
  const summary = await api(`/api/runs/${id}`);
  if (id !== state.run) return;
  const changed = full || !state.summary || summary.last_step !== state.summary.last_step ||
                  summary.n_events !== state.summary.n_events || summary.scalar_names.length !== state.summary.scalar_names.length;
  state.summary = summary;
  renderSummary(summary);
  if (!changed) return;
  const [series, events, steps, panels] = await Promise.all([api(`/api/runs/${id}/scalars`), api(`/api/runs/${id}/events`),
                                                             api(`/api/runs/${id}/steps`), api(`/api/runs/${id}/panels`)]);
  if (id !== state.run) return;
  renderAlerts(events);
  renderMetrics(series, events, panels);
  loadGallery(id);
  state.steps = steps;
  applySampleKind(summary.samples_kind);
  setSlider("samples-slider", steps.length, state.followSamples);
  // the map first (the view people wait for), the samples alongside it
  const samplesShown = showSamples();
  // the live worker grows the map snapshot by snapshot: reload it when it has more steps
  if (full || (summary.has_projection && (!state.projection || summary.projection_steps !== state.projection.steps.length)))
    await loadProjection();
  else if (state.projection && state.followProjection) { setSlider("projection-slider", state.projection.steps.length, true); }
  await samplesShown;
  if (id !== state.run) return;
  const lag = summary.analysis_lag === null ? "" : ` · live analysis ${summary.analysis_lag ? summary.analysis_lag + " behind" : "up to date"}`;
  setStatus(`${summary.n_snapshots} snapshots · last step ${summary.last_step}${lag} · updated ${new Date().toLocaleTimeString()}`);
}

document.getElementById("run-select").addEventListener("change", e => selectRun(e.target.value));
document.getElementById("samples-slider").addEventListener("input", e => {
  state.followSamples = +e.target.value >= +e.target.max; showSamples(); });
document.getElementById("projection-slider").addEventListener("input", e => {
  state.followProjection = +e.target.value >= +e.target.max; showProjection(); });
document.getElementById("play").addEventListener("click", () => {
  const button = document.getElementById("play");
  if (state.playing) { clearInterval(state.playing); state.playing = null; button.textContent = "play"; return; }
  button.textContent = "pause";
  state.playing = setInterval(() => {
    const s = document.getElementById("projection-slider");
    s.value = (+s.value + 1) % (+s.max + 1); showProjection();
  }, 500);
});
state.t0 = performance.now();
loadRuns().catch(e => setStatus("error: " + e.message));
setInterval(() => { loadRuns().then(() => refresh(false)).catch(e => setStatus("error: " + e.message)); }, 2000);
</script>
</body></html>
""".replace("__PROJECTION_JS__", PROJECTION_JS).replace("__MARKED__", script_json(list(MARKED_EVENT_KINDS))) \
    .replace("__EVENT_COLORS__", script_json(EVENT_COLORS)).replace("__CSS__", CSS)
