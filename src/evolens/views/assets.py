"""JavaScript shared by the static report and the dashboard page, so both draw the map the same way."""

PROJECTION_JS = r"""
// one fixed colour per class label (d3's category10, cycled), so a class keeps its colour across snapshots
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf"];
function evolensDrawProjection(div, meta, ref, p) {
  // meta: {bounds: [x0, x1, y0, y1]}; ref and p: {x, y, labels, ids} as served by /api/.../projection
  const [x0, x1, y0, y1] = meta.bounds, padx = 0.05 * (x1 - x0 || 1), pady = 0.05 * (y1 - y0 || 1);
  const traces = [];
  if (ref && ref.x && ref.x.length) traces.push({x: ref.x, y: ref.y, mode: "markers", type: "scattergl",
    name: "reference data", hoverinfo: "skip", marker: {size: 4, color: "rgba(150,150,150,0.35)"}});
  // one trace per label (class), so the legend names the colours; a single trace when there are no labels
  const groups = new Map();
  p.x.forEach((_, i) => { const key = p.labels ? p.labels[i] : null;
    if (!groups.has(key)) groups.set(key, []); groups.get(key).push(i); });
  for (const key of [...groups.keys()].sort((a, b) => a - b)) {
    const idx = groups.get(key);
    traces.push({x: idx.map(i => p.x[i]), y: idx.map(i => p.y[i]), mode: "markers", type: "scattergl",
      name: key === null ? "samples at step " + p.step : "label " + key,
      marker: {size: 6, line: {width: 0.5, color: "white"}, color: key === null ? "#1f77b4" : PALETTE[((key % 10) + 10) % 10]},
      text: idx.map(i => (p.ids ? "probe " + p.ids[i] : "sample " + i) + (key === null ? "" : ", label " + key)),
      hoverinfo: "text"});
  }
  return Plotly.react(div, traces, {height: 520, margin: {l: 10, r: 10, t: 10, b: 10},
    xaxis: {range: [x0 - padx, x1 + padx], showticklabels: false, zeroline: false},
    yaxis: {range: [y0 - pady, y1 + pady], showticklabels: false, zeroline: false, scaleanchor: "x"},
    template: "plotly_white", showlegend: true, legend: {x: 0, y: 1}}, {displaylogo: false, responsive: true});
}
"""
