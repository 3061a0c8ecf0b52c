"""What the static report and the dashboard page share, so both look and draw alike: one stylesheet, one palette,
the colours of marked events, and the map renderer (JavaScript)."""

import json
from typing import Any

from ..store.events import EVENT_COLORS  # the colour of each event style: one place, store.events

# characters that could end a <script> element, open an HTML comment or end a JS line inside a string literal
_SCRIPT_UNSAFE = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def script_json(value: Any, **dumps_kwargs: Any) -> str:
    """``value`` as JSON safe to place inside an HTML ``<script>`` element: ``<``, ``>``, ``&`` and the JavaScript
    line separators become ``\\uXXXX`` escapes (the JSON still decodes to the same value), so no string in it —
    a probe id such as ``</script><script>…`` — can end the element or start markup."""
    text = json.dumps(value, **dumps_kwargs)
    for unsafe, escaped in _SCRIPT_UNSAFE.items():
        text = text.replace(unsafe, escaped)
    return text

# d3's category10: one fixed colour per class label (cycled) and per compared run
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#1f2937;color:#fff;padding:12px 24px;display:flex;flex-wrap:wrap;gap:4px 16px;align-items:center}
header h1{margin:0;font-size:20px}header p{margin:0;color:#cbd5e1;font-size:13px;flex-basis:100%}
header select{font-size:14px;padding:2px 6px}#status{color:#cbd5e1;font-size:13px}main{padding:4px 24px 40px}
section{background:#fff;border:1px solid #e5e7eb;border-radius:8px;margin:14px 0;padding:10px 14px}
h2{font-size:16px;margin:4px 0 8px}.muted{color:#777;font-size:13px}
table{border-collapse:collapse;font-size:13px}td,th{border-bottom:1px solid #eee;padding:3px 10px 3px 0;text-align:left;
vertical-align:top}
pre{background:#f3f4f6;padding:8px;border-radius:6px;font-size:12px;max-height:260px;overflow:auto}
.alert{color:__alert__}.warning{color:__warning__}.intervention{color:__intervention__}
.grids{display:flex;flex-wrap:wrap;gap:16px}.grids figure{margin:0}figcaption{font-size:12px;color:#555}
.grids img,#grid{image-rendering:pixelated;border:1px solid #ddd;max-width:100%}
.row{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}.row>section{flex:1 1 560px;min-width:420px}
input[type=range]{width:60%}
.panels{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:10px}
.panel{border:1px solid #eee;border-radius:6px;padding:4px;min-width:0}
table.config th{font-weight:normal;color:#555;white-space:nowrap}table.config code{word-break:break-all}
.gallery{display:flex;flex-wrap:wrap;gap:6px 18px}.gallery-row{display:flex;gap:4px;align-items:flex-start}
.gallery figure{margin:0;text-align:center}.gallery img{image-rendering:pixelated;border:1px solid #ddd}
.gallery figcaption{font-size:10px;color:#555;max-width:90px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.gallery-sample img{border:2px solid #1f2937}
#compare{color:#e5e7eb;font-size:13px}#compare summary{cursor:pointer}
#compare-list label{margin-right:12px;white-space:nowrap}.group-button{margin:4px 8px 4px 0;font-size:12px}
.map-thumb{position:absolute;z-index:10;pointer-events:none;image-rendering:pixelated;border:2px solid #1f2937;
background:#fff;box-shadow:0 2px 8px rgba(0,0,0,.3)}
"""
for _kind, _colour in EVENT_COLORS.items():
    CSS = CSS.replace(f"__{_kind}__", _colour)

PROJECTION_JS = r"""
// one fixed colour per class label (cycled), so a class keeps its colour across snapshots
const PALETTE = __PALETTE__;
// What a map can be coloured by, for a frame {labels, attributes}: "class" (when labelled), each attribute,
// and "snapshot" (the last few snapshots, older ones fainter).
function evolensColourChoices(p) {
  const out = [];
  if (p && p.labels) out.push(["class", "class"]);
  for (const name of Object.keys((p && p.attributes) || {})) out.push(["attribute:" + name, name]);
  out.push(["snapshot", "snapshot (trail)"]);
  return out;
}
function evolensFillColourSelect(select, p) {
  const choices = evolensColourChoices(p), current = select.value;
  const key = JSON.stringify(choices);
  if (select.dataset.choices !== key) {
    select.textContent = "";
    for (const [value, text] of choices) { const o = document.createElement("option"); o.value = value; o.textContent = text; select.appendChild(o); }
    select.dataset.choices = key;
  }
  select.value = choices.some(([v]) => v === current) ? current : choices[0][0];
  return select.value;
}
// a sequential colour for position t in [0, 1] (viridis, 5 stops)
function evolensSequential(t) {
  const stops = [[68,1,84],[59,82,139],[33,145,140],[94,201,98],[253,231,37]];
  const x = Math.max(0, Math.min(1, t)) * (stops.length - 1), i = Math.min(stops.length - 2, Math.floor(x)), f = x - i;
  const c = stops[i].map((v, k) => Math.round(v + f * (stops[i + 1][k] - v)));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}
// A still picture of a map frame on a canvas, drawn while plotly.js (4.8 MB) is still being parsed — on a cold
// browser cache that takes ~0.9 s, longer than everything else of the first render — and removed when the
// interactive map replaces it. Same bounds, equal axis units, class colours as evolensDrawProjection.
function evolensPreviewProjection(div, meta, ref, p) {
  const canvas = document.createElement("canvas"), w = div.clientWidth || 600, h = 520, ratio = window.devicePixelRatio || 1;
  canvas.width = w * ratio; canvas.height = h * ratio; canvas.style.width = w + "px"; canvas.style.height = h + "px";
  canvas.className = "map-preview";
  const [x0, x1, y0, y1] = meta.bounds, dx = (x1 - x0 || 1) * 1.1, dy = (y1 - y0 || 1) * 1.1;
  const scale = Math.min((w - 20) / dx, (h - 20) / dy), cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  const dot = (x, y, r) => { ctx.beginPath(); ctx.arc(w / 2 + (x - cx) * scale, h / 2 - (y - cy) * scale, r, 0, 6.2832); ctx.fill(); };
  ctx.fillStyle = "rgba(150,150,150,0.35)";
  if (ref && ref.x) ref.x.forEach((x, i) => dot(x, ref.y[i], 2));
  p.x.forEach((x, i) => { const key = p.labels ? p.labels[i] : null;
    ctx.fillStyle = key === null ? "#1f77b4" : PALETTE[((key % 10) + 10) % 10]; dot(x, p.y[i], 3); });
  div.textContent = "";
  div.appendChild(canvas);
}

function evolensDrawProjection(div, meta, ref, p, track, options) {
  // meta: {bounds: [x0, x1, y0, y1]}; ref and p: {x, y, labels, ids, attributes} as served by /api/.../projection;
  // track (optional): {id, steps, x, y}, one probe's positions over the snapshots, drawn as a line;
  // options: {colour: "class" | "attribute:NAME" | "snapshot", trail: [earlier frames, oldest first]}
  const opts = options || {}, colour = opts.colour || (p.labels ? "class" : "snapshot");
  const preview = (typeof div === "string" ? document.getElementById(div) : div).querySelector("canvas.map-preview");
  if (preview) preview.remove();
  const [x0, x1, y0, y1] = meta.bounds, padx = 0.05 * (x1 - x0 || 1), pady = 0.05 * (y1 - y0 || 1);
  const traces = [];
  if (ref && ref.x && ref.x.length) traces.push({x: ref.x, y: ref.y, mode: "markers", type: "scattergl",
    name: "reference data", marker: {size: 4, color: "rgba(150,150,150,0.35)"}, hoverinfo: "text",
    text: ref.x.map((_, i) => "reference point " + i + (ref.labels ? ", label " + ref.labels[i] : "")),
    customdata: ref.x.map((_, i) => "ref:" + i)});
  // only the current frame's points carry their probe id (hover thumbnail and click follow the current step)
  const probeTrace = (frame, idx, name, color, size, key, current = true) => ({x: idx.map(i => frame.x[i]), y: idx.map(i => frame.y[i]),
    mode: "markers", type: "scattergl", name, marker: {size, line: {width: size > 4 ? 0.5 : 0, color: "white"}, color},
    text: idx.map(i => (frame.ids ? "probe " + frame.ids[i] : "sample " + i) + " at step " + frame.step + (key === null ? "" : ", " + key)),
    customdata: frame.ids && current ? idx.map(i => frame.ids[i]) : undefined, hoverinfo: "text"});
  if (colour === "snapshot") {
    // the trail: earlier snapshots small and in their time's colour, the current one on top
    const frames = [...(opts.trail || []), p], n = frames.length;
    frames.forEach((frame, k) => traces.push(probeTrace(frame, frame.x.map((_, i) => i), "step " + frame.step,
      evolensSequential(n > 1 ? k / (n - 1) : 1), k === n - 1 ? 6 : 4, null, k === n - 1)));
  } else {
    // one trace per value of the class or attribute, so the legend names the colours
    const attribute = colour.startsWith("attribute:") ? colour.slice(10) : null;
    const values = attribute !== null ? (p.attributes || {})[attribute] : p.labels;
    const what = attribute !== null ? attribute : "label";
    const groups = new Map();
    p.x.forEach((_, i) => { const key = values ? values[i] : null;
      if (!groups.has(key)) groups.set(key, []); groups.get(key).push(i); });
    for (const key of [...groups.keys()].sort((a, b) => a - b))
      traces.push(probeTrace(p, groups.get(key), key === null ? "samples at step " + p.step : what + " " + key,
        key === null ? "#1f77b4" : PALETTE[((key % 10) + 10) % 10], 6, key === null ? null : what + " " + key));
  }
  if (track && track.x.length) traces.push({x: track.x, y: track.y, mode: "lines+markers+text", type: "scatter",
    name: "trajectory of probe " + track.id, text: track.steps.map(s => String(s)), textposition: "top center",
    textfont: {size: 9, color: "#444"}, line: {color: "#111", width: 1.5}, marker: {size: 5, color: "#111"},
    hoverinfo: "text", hovertext: track.steps.map(s => "probe " + track.id + " at step " + s)});
  return Plotly.react(div, traces, {height: 520, margin: {l: 10, r: 10, t: 10, b: 10},
    xaxis: {range: [x0 - padx, x1 + padx], showticklabels: false, zeroline: false},
    yaxis: {range: [y0 - pady, y1 + pady], showticklabels: false, zeroline: false, scaleanchor: "x"},
    template: "plotly_white", showlegend: true, legend: {x: 0, y: 1}, uirevision: "map"}, {displaylogo: false, responsive: true});
}

// The memorisation gallery: each sample beside its nearest training images and their distances, closest first.
// g as views.data.memorisation_gallery returns it; built with DOM nodes (text never parsed as HTML).
function evolensDrawGallery(holder, g) {
  holder.textContent = "";
  const caption = document.createElement("p");
  caption.className = "muted";
  caption.textContent = `step ${g.step}: each sample (left) beside its nearest ${g.reference} images in ` +
    `${g.encoder_id} space, with their distances; closest samples first (a distance near 0 is a copy).`;
  holder.appendChild(caption);
  const grid = document.createElement("div");
  grid.className = "gallery";
  for (const item of g.items) {
    const row = document.createElement("div");
    row.className = "gallery-row";
    const cell = (src, text, cls) => { const f = document.createElement("figure"); if (cls) f.className = cls;
      const img = document.createElement("img"); img.src = src; img.alt = text; f.appendChild(img);
      const c = document.createElement("figcaption"); c.textContent = text; f.appendChild(c); return f; };
    row.appendChild(cell(item.sample, "probe " + item.probe, "gallery-sample"));
    for (const n of item.neighbours) row.appendChild(cell(n.image, `#${n.index} d=${n.distance}`, ""));
    grid.appendChild(row);
  }
  holder.appendChild(grid);
}

// Hover a probe on the map: its sample as a thumbnail beside the cursor. ``thumbFor(id)`` gives an image URL or
// data URI (or null: no thumbnail). Attached once per map div; the function is replaced on later calls.
function evolensHoverThumbnails(div, thumbFor) {
  div.__evolensThumbFor = thumbFor;
  if (div.__evolensThumb) return;
  const img = document.createElement("img");
  img.className = "map-thumb";
  img.alt = "sample";
  img.style.display = "none";
  document.body.appendChild(img);
  div.__evolensThumb = img;
  // call after the map is drawn (plotly adds div.on)
  div.on("plotly_hover", (event) => {
    const point = event.points && event.points[0];
    const src = point && point.customdata !== undefined ? div.__evolensThumbFor(String(point.customdata)) : null;
    if (!src) { img.style.display = "none"; return; }
    img.src = src;
    img.style.left = (event.event.pageX + 14) + "px";
    img.style.top = (event.event.pageY + 14) + "px";
    img.style.display = "block";
  });
  div.on("plotly_unhover", () => { img.style.display = "none"; });
}

// Click a probe on the map: ``load(id)`` returns (or resolves to) its track; the map is redrawn with it.
function evolensFollowProbeOnClick(div, load, redraw) {
  if (div.__evolensFollow) { div.__evolensFollow = {load, redraw}; return; }
  div.__evolensFollow = {load, redraw};
  div.on("plotly_click", async (event) => {
    const point = event.points && event.points[0];
    if (!point || point.customdata === undefined || String(point.customdata).startsWith("ref:")) return;
    const {load, redraw} = div.__evolensFollow;
    redraw(await load(String(point.customdata)));
  });
}

// A probe's track over the snapshots of an embedded map (the report's frames).
function evolensTrackFromFrames(d, id) {
  const track = {id, steps: [], x: [], y: []};
  for (const s of d.steps) {
    const f = d.frames[String(s)], i = f.ids ? f.ids.indexOf(id) : -1;
    if (i >= 0) { track.steps.push(s); track.x.push(f.x[i]); track.y.push(f.y[i]); }
  }
  return track;
}
""".replace("__PALETTE__", script_json(PALETTE))
