"""JavaScript shared by the static report and the dashboard page, so both draw the map the same way."""

PROJECTION_JS = r"""
function evolensDrawProjection(div, meta, ref, p) {
  // meta: {bounds: [x0, x1, y0, y1]}; ref and p: {x, y, labels, ids} as served by /api/.../projection
  const [x0, x1, y0, y1] = meta.bounds, padx = 0.05 * (x1 - x0 || 1), pady = 0.05 * (y1 - y0 || 1);
  const traces = [];
  if (ref && ref.x && ref.x.length) traces.push({x: ref.x, y: ref.y, mode: "markers", type: "scattergl",
    name: "reference data", hoverinfo: "skip", marker: {size: 4, color: "rgba(150,150,150,0.35)"}});
  const marker = {size: 6, line: {width: 0.5, color: "white"}};
  if (p.labels) Object.assign(marker, {color: p.labels, colorscale: "Turbo", showscale: true, colorbar: {title: "label"}});
  traces.push({x: p.x, y: p.y, mode: "markers", type: "scattergl", name: "samples at step " + p.step, marker,
    text: p.ids ? p.ids.map((id, i) => "probe " + id + (p.labels ? ", label " + p.labels[i] : "")) : null,
    hoverinfo: "text"});
  return Plotly.react(div, traces, {height: 520, margin: {l: 10, r: 10, t: 10, b: 10},
    xaxis: {range: [x0 - padx, x1 + padx], showticklabels: false, zeroline: false},
    yaxis: {range: [y0 - pady, y1 + pady], showticklabels: false, zeroline: false, scaleanchor: "x"},
    template: "plotly_white", showlegend: true, legend: {x: 0, y: 1}}, {displaylogo: false, responsive: true});
}
"""
