"""The one-file HTML report: ``build_report(runs) -> str`` and ``write_report(runs, path)``.

One self-contained file that opens offline: plotly.js is embedded from the installed ``plotly`` package (no CDN),
sample grids are inline PNG data URIs. Sections: run summary and config; alerts and interventions; metric curves
over steps, grouped by name prefix, with interventions/pauses/alerts marked on the step axis; the evolutionary
projection (snapshot slider and play button, coloured by label, reference data in grey); samples per snapshot
(the same probes at every step) under a slider. Given several runs (``evolens compare``), curves are overlaid
(one colour per run) and samples and maps are shown side by side.
"""

from __future__ import annotations

import base64
import html
import os
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputError, StoreIntegrityError
from ..store.files import atomic_write
from ..store.run import Run, open_run
from .assets import CSS, EVENT_COLORS, PALETTE, PROJECTION_JS, script_json
from .data import (
    event_list,
    class_heatmap,
    memorisation_gallery,
    metric_panels,
    probe_thumbnails,
    reference_thumbnails,
    png_bytes,
    projection_meta,
    run_summary,
    sample_grid,
    sample_points,
    scalar_series,
)

__all__ = ["build_report", "write_report"]

MAX_GRID_SNAPSHOTS = 60
MAX_REPORT_POINTS = 2000  # per snapshot in the map; the dashboard serves up to 5,000
MAX_THUMBNAILS_PER_FRAME = 200  # probes per map frame that get a hover thumbnail in the report
MAX_REFERENCE_THUMBNAILS = 300  # reference points of a map whose images the report embeds for hovering
TRAIL_SNAPSHOTS = 5  # earlier snapshots drawn when the map is coloured by snapshot


def _esc(value: Any) -> str:
    return html.escape(str(value))


@lru_cache(maxsize=1)
def plotly_js() -> str:
    """The plotly.js bundle that ships with the installed plotly package (read once per process)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _figure_html(figure: Any, div_id: str) -> str:
    return figure.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                          config={"responsive": True, "displaylogo": False})


def _metric_figures(runs: list[Run], names_by_run: list[dict[str, dict]], events_by_run: list[list[dict]]) -> str:
    """Small multiples: one panel per metric and context (``views.data.metric_panels``), titled with the metric,
    its encoder and reference and its direction, runs overlaid, alerts/pauses/interventions marked on the step
    axis; per-class series as a class × step heatmap beside the curve (one per run)."""
    import plotly.graph_objects as go

    all_names: list[str] = []
    for series in names_by_run:
        all_names += [n for n in series if n not in all_names]
    if not all_names:
        return '<p class="muted">No scalars were logged in this run.</p>'
    parts = []
    for panel in metric_panels(all_names):
        title = panel["title"] + (f" ({panel['direction']})" if panel["direction"] else "")
        cells = []
        if panel["overall"] is not None:
            figure = go.Figure()
            for r, (run, series) in enumerate(zip(runs, names_by_run)):
                if panel["overall"] in series:
                    figure.add_trace(go.Scatter(
                        x=series[panel["overall"]]["steps"], y=series[panel["overall"]]["values"], mode="lines+markers",
                        name=run.name, marker=dict(size=4), line=dict(color=PALETTE[r % len(PALETTE)])))
            _mark_events(figure, events_by_run)
            figure.update_layout(title=dict(text=title, font=dict(size=13)), xaxis_title="step",
                                 template="plotly_white", height=300, margin=dict(l=50, r=20, t=40, b=40),
                                 showlegend=len(runs) > 1, legend=dict(font=dict(size=10)))
            cells.append(_figure_html(figure, f"{panel['id']}-curve"))
        if len(panel["classes"]) >= 1:
            for r, (run, series) in enumerate(zip(runs, names_by_run)):
                heat = class_heatmap(series, panel["classes"])
                if not heat["steps"]:
                    continue
                figure = go.Figure(go.Heatmap(
                    z=heat["z"], x=heat["steps"], y=[f"class {c}" for c in heat["classes"]], colorscale="Viridis",
                    reversescale=panel["direction"] == "lower is better", colorbar=dict(thickness=10),
                    hovertemplate="step %{x}<br>%{y}<br>value %{z:.4g}<extra></extra>"))
                _mark_events(figure, events_by_run[r:r + 1])
                figure.update_layout(
                    title=dict(text=f"{panel['title']} per class" + (f" — {run.name}" if len(runs) > 1 else ""),
                               font=dict(size=13)),
                    xaxis_title="step", template="plotly_white", height=max(220, 60 + 22 * len(heat["classes"])),
                    margin=dict(l=70, r=20, t=40, b=40))
                cells.append(_figure_html(figure, f"{panel['id']}-classes-{r}"))
        parts.append(f'<div class="panel" id="{panel["id"]}">{"".join(cells)}</div>')
    return f'<div class="panels">{"".join(parts)}</div>'


def _mark_events(figure: Any, events_by_run: list[list[dict]]) -> None:
    """Alerts, pauses and interventions as dashed lines on the step axis."""
    for events in events_by_run:
        for event in events:
            if event["marked"] and event["step"] is not None:
                color = EVENT_COLORS[event["style"]]
                figure.add_vline(x=event["step"], line=dict(color=color, dash="dash", width=1),
                                 annotation_text=event["kind"], annotation_font_size=10)


def _events_html(runs: list[Run], events_by_run: list[list[dict]]) -> str:
    rows = []
    for run, events in zip(runs, events_by_run):
        for e in events:
            if e["listed"]:
                css = e["style"]
                run_cell = f"<td>{_esc(run.name)}</td>" if len(runs) > 1 else ""
                rows.append(f'<tr class="{css}">{run_cell}<td>{_esc(e["step"])}</td><td>{_esc(e["kind"])}</td>'
                            f'<td>{_esc(e["level"])}</td><td>{_esc(e["message"])}</td></tr>')
    if not rows:
        return '<p class="muted" id="no-alerts">No alerts, warnings or interventions.</p>'
    head = ("<th>run</th>" if len(runs) > 1 else "") + "<th>step</th><th>kind</th><th>level</th><th>message</th>"
    return f'<table id="alerts-table"><tr>{head}</tr>{"".join(rows)}</table>'


def _damaged_or(compute: Any) -> Any:
    """``compute()``, or the ``StoreIntegrityError`` it raised (a damaged array: shown as such, not fatal)."""
    try:
        return compute()
    except StoreIntegrityError as exc:
        return exc


def _unless_damaged(compute: Any) -> Any:
    """``compute()``, or None where it met a damaged array (an optional extra left out)."""
    result = _damaged_or(compute)
    return None if isinstance(result, StoreIntegrityError) else result


def _section(build: Any, *args: Any) -> str:
    """One report section; a damaged store under it becomes a note in the section instead of a failed report."""
    try:
        return build(*args)
    except StoreIntegrityError as exc:
        return f'<p class="warning">Part of the run is damaged and is left out here: {_esc(exc)}</p>'


def _thin(steps: list[int], limit: int) -> list[int]:
    if len(steps) <= limit:
        return steps
    keep = np.unique(np.linspace(0, len(steps) - 1, limit).round().astype(int))
    return [steps[i] for i in keep]


def _samples_html(runs: list[Run]) -> str:
    import plotly.graph_objects as go

    blocks, script_data = [], {}
    union: list[int] = sorted({s for run in runs for s in run.steps().tolist()})
    steps = _thin(union, MAX_GRID_SNAPSHOTS)
    if not steps:
        return '<p class="muted">No snapshots.</p>'
    figures = []
    for r, run in enumerate(runs):
        run_steps = run.steps().tolist()
        if not run_steps:
            continue
        first = _damaged_or(lambda: sample_grid(run, run_steps[0], max_images=100))
        if isinstance(first, StoreIntegrityError):
            first = next((g for g in (_damaged_or(lambda s=s: sample_grid(run, s, max_images=100)) for s in run_steps)
                          if not isinstance(g, StoreIntegrityError)), None)
            if first is None:
                blocks.append(f'<p class="warning">The samples of {_esc(run.name)} are damaged (run <code>evolens '
                              'verify</code>).</p>')
                continue
        if first is not None:
            uris = {}
            for step in steps:
                nearest = min(run_steps, key=lambda s: abs(s - step))
                picture = _damaged_or(lambda: sample_grid(run, nearest, max_images=100))
                if isinstance(picture, StoreIntegrityError):  # shown as a grey tile with a caption, the report goes on
                    picture = np.full_like(first, 128)
                    nearest = f"{nearest} (damaged: evolens verify)"
                scale = max(1, 280 // max(1, picture.shape[1]))
                uris[str(step)] = ("data:image/png;base64," + base64.b64encode(png_bytes(picture, scale)).decode(), nearest)
            script_data[f"grid-{r}"] = uris
            blocks.append(f'<figure><img id="grid-{r}" alt="samples of {_esc(run.name)}" src="{uris[str(steps[0])][0]}">'
                          f'<figcaption id="grid-{r}-caption">{_esc(run.name)}, step {_esc(uris[str(steps[0])][1])}</figcaption></figure>')
        else:
            points = _damaged_or(lambda: sample_points(run, run_steps[0]))
            if points is None or isinstance(points, StoreIntegrityError):
                continue
            figures.append((r, run, run_steps))
    html_parts = []
    if blocks:
        html_parts.append(
            f'<label>snapshot <input type="range" id="grid-slider" min="0" max="{len(steps) - 1}" value="0" step="1" '
            f'style="width:60%"></label> <span id="grid-step">step {steps[0]}</span>'
            f'<div class="grids">{"".join(blocks)}</div>'
            f"<script>(function(){{const steps={script_json(steps)};const data={script_json(script_data)};"
            "const slider=document.getElementById('grid-slider');slider.addEventListener('input',function(){"
            "const s=String(steps[+slider.value]);document.getElementById('grid-step').textContent='step '+s;"
            "for(const id in data){const img=document.getElementById(id);img.src=data[id][s][0];"
            "document.getElementById(id+'-caption').textContent=img.alt.replace('samples of ','')+', step '+data[id][s][1];}"
            "});})();</script>")
    for r, run, run_steps in figures:  # low-dimensional samples: a histogram/scatter per snapshot with a slider
        chosen = _thin(run_steps, MAX_GRID_SNAPSHOTS)
        reference = None
        if "train" in run.reference_names():
            ref = run.reference("train", mmap=True).images  # the first 5,000 rows read, not the whole set
            reference = np.asarray(ref.reshape(ref.shape[0], -1)[:5000])

        def traces(step: int) -> list:
            p = sample_points(run, step)
            out = []
            if p["y"] is None:
                if reference is not None:
                    out.append(go.Histogram(x=reference[:, 0], histnorm="probability density", name="real data",
                                            marker_color="rgba(150,150,150,0.5)", nbinsx=40))
                out.append(go.Histogram(x=p["x"], histnorm="probability density", name=f"samples, step {step}",
                                        marker_color="rgba(31,119,180,0.6)", nbinsx=40))
            else:
                if reference is not None:
                    out.append(go.Scattergl(x=reference[:, 0], y=reference[:, 1], mode="markers", name="real data",
                                            marker=dict(size=4, color="rgba(150,150,150,0.5)")))
                out.append(go.Scattergl(x=p["x"], y=p["y"], mode="markers", name=f"samples, step {step}",
                                        marker=dict(size=5, color="rgba(31,119,180,0.8)")))
            return out

        figure = go.Figure(data=traces(chosen[0]), frames=[go.Frame(data=traces(s), name=str(s)) for s in chosen])
        figure.update_layout(
            title=f"samples of {run.name}", template="plotly_white", height=420, barmode="overlay",
            sliders=[dict(active=0, currentvalue=dict(prefix="step "), steps=[
                dict(label=str(s), method="animate", args=[[str(s)], dict(mode="immediate", frame=dict(duration=0, redraw=True))])
                for s in chosen])])
        html_parts.append(_figure_html(figure, f"samples-{r}"))
    return "\n".join(html_parts) or '<p class="muted">The samples are neither images nor 1-D/2-D points.</p>'


def _projection_html(runs: list[Run]) -> str:
    """Per run: a map with an HTML snapshot slider and play button, drawn by the same JS as the dashboard."""
    from .data import projection_points

    parts = []
    for r, run in enumerate(runs):
        meta = projection_meta(run)
        if meta is None:
            continue
        steps = _thin(meta["steps"], MAX_GRID_SNAPSHOTS)
        data = {"bounds": meta["bounds"], "steps": steps,
                "reference": projection_points(run, meta, None, max_points=MAX_REPORT_POINTS),
                "frames": {str(s): projection_points(run, meta, s, max_points=MAX_REPORT_POINTS) for s in steps}}
        for s in steps:  # hover thumbnails of the probes drawn in each frame (images only)
            frame = data["frames"][str(s)]
            if frame["ids"] and len(frame["ids"]) <= MAX_THUMBNAILS_PER_FRAME:
                frame["thumbs"] = _unless_damaged(lambda s=s, ids=frame["ids"]: probe_thumbnails(run, s, ids, size=56))
        if 0 < len(data["reference"]["x"]) <= MAX_REFERENCE_THUMBNAILS:  # hover a reference point: its image
            data["ref_thumbs"] = _unless_damaged(lambda: reference_thumbnails(run, meta, size=56))
        scores = ", ".join(f"{k} {v:.3f}" for k, v in meta.get("scores", {}).items())
        parts.append(f"""
<h3 style="font-size:14px">{_esc(run.name)} <span class="muted">({_esc(meta['layout'])} layout, {_esc(meta['encoder_id'])}
features{'; ' + _esc(scores) if scores else ''})</span></h3>
<div><label>snapshot <input type="range" id="projection-slider-{r}" min="0" max="{len(steps) - 1}" value="0"
style="width:60%"></label> <span id="projection-step-{r}">step {steps[0]}</span>
<button id="projection-play-{r}">play</button> <label>colour by <select id="projection-colour-{r}"></select></label></div>
<div id="projection-{r}" class="projection-plot" style="height:520px"></div>
<script>(function(){{const d={script_json(data, separators=(",", ":"))};const div="projection-{r}";
const slider=document.getElementById("projection-slider-{r}"),label=document.getElementById("projection-step-{r}");
let track=null;const colour=document.getElementById("projection-colour-{r}");
function thumb(id){{if(id.startsWith("ref:"))return d.ref_thumbs?d.ref_thumbs[+id.slice(4)]||null:null;
const f=d.frames[String(d.steps[+slider.value])];const i=f.ids?f.ids.indexOf(id):-1;
return i>=0&&f.thumbs?f.thumbs[i]:null;}}
function show(){{const k=+slider.value,s=d.steps[k],f=d.frames[String(s)];label.textContent="step "+s;
const by=evolensFillColourSelect(colour,f);const trail=d.steps.slice(Math.max(0,k-{TRAIL_SNAPSHOTS}),k).map(t=>d.frames[String(t)]);
evolensDrawProjection(div,d,d.reference,f,track,{{colour:by,trail}}).then(()=>{{const el=document.getElementById(div);
evolensFollowProbeOnClick(el,id=>evolensTrackFromFrames(d,id),t=>{{track=t;show();}});evolensHoverThumbnails(el,thumb);}});}}
slider.addEventListener("input",show);colour.addEventListener("change",show);let timer=null;const play=document.getElementById("projection-play-{r}");
play.addEventListener("click",function(){{if(timer){{clearInterval(timer);timer=null;play.textContent="play";return;}}
play.textContent="pause";timer=setInterval(function(){{slider.value=(+slider.value+1)%d.steps.length;show();}},500);}});
show();}})();</script>""")
    if not parts:
        return ('<p class="muted">No projection stored: run <code>evolens.analyses.projection</code> on the run '
                '(the demo does) to see the generated distribution move against the data.</p>')
    return "\n".join(parts)


def _gallery_html(runs: list[Run]) -> str:
    """Per run, the memorisation gallery of its newest snapshot with evidence, drawn by the dashboard's renderer."""
    parts = []
    for r, run in enumerate(runs):
        gallery = memorisation_gallery(run)
        if gallery is None:
            continue
        parts.append(f'<h3 style="font-size:14px">{_esc(run.name)}</h3><div id="gallery-{r}"></div>'
                     f'<script>evolensDrawGallery(document.getElementById("gallery-{r}"),{script_json(gallery)});</script>')
    return "\n".join(parts) or ('<p class="muted">No nearest-neighbour evidence stored: run <code>evolens proximity '
                                'RUN</code> (the demo does) to see each sample beside what it is close to.</p>')


def _summary_html(runs: list[Run], summaries: list[dict]) -> str:
    rows = []
    for run, s in zip(runs, summaries):
        refs = ", ".join(f"{x['name']} ({x['n']})" for x in s["references"]) or "none"
        rows.append(f"<tr><td><b>{_esc(s['name'])}</b></td><td>{_esc(s['path'])}</td><td>{s['n_snapshots']}</td>"
                    f"<td>{_esc(s['first_step'])}–{_esc(s['last_step'])}</td><td>{s['sessions']}</td>"
                    f"<td>{_esc(refs)}</td><td>{s['n_alerts']}</td></tr>")
    table = ("<table id='runs-table'><tr><th>run</th><th>path</th><th>snapshots</th><th>steps</th><th>sessions</th>"
             f"<th>references</th><th>alerts</th></tr>{''.join(rows)}</table>")
    configs = "".join(f"<h3 style='font-size:14px'>config of {_esc(s['name'])}</h3><table class='config'>"
                      + "".join(f"<tr><th>{_esc(k)}</th><td><code>{_esc(v)}</code></td></tr>" for k, v in s["config_rows"])
                      + "</table>" for s in summaries)
    return table + configs


def build_report(runs: Sequence[Run | str | os.PathLike], title: str | None = None) -> str:
    """The report of one run, or of several overlaid, as one self-contained HTML string."""
    opened = [r if isinstance(r, Run) else open_run(r) for r in runs]
    if not opened:
        raise InputError("runs: expected at least one run, received none")
    summaries = [run_summary(r) for r in opened]
    series = [scalar_series(r) for r in opened]
    events = [event_list(r) for r in opened]
    title = title or ("evolens report: " + opened[0].name if len(opened) == 1
                      else "evolens comparison: " + " vs ".join(r.name for r in opened))
    from .. import __version__

    generated = time.strftime("%Y-%m-%d %H:%M:%S")
    body = f"""
<header><h1>{_esc(title)}</h1><p>{len(opened)} run(s) · generated {generated} by evolens {__version__}</p></header>
<main>
<section id="summary"><h2>Run</h2>{_summary_html(opened, summaries)}</section>
<section id="alerts"><h2>Alerts and interventions</h2>{_events_html(opened, events)}</section>
<section id="metrics"><h2>Metrics over training</h2>{_section(_metric_figures, opened, series, events)}</section>
<section id="projection"><h2>Evolutionary projection</h2>{_section(_projection_html, opened)}</section>
<section id="samples"><h2>Samples per snapshot</h2>{_section(_samples_html, opened)}</section>
<section id="memorisation"><h2>Memorisation: samples beside their nearest training images</h2>{_section(_gallery_html, opened)}</section>
</main>"""
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{_esc(title)}</title>"
            f"<style>{CSS}</style><script>{plotly_js()}</script><script>{PROJECTION_JS}</script></head>"
            f"<body>{body}</body></html>\n")


def write_report(runs: Sequence[Run | str | os.PathLike] | Run | str | os.PathLike,
                 path: str | os.PathLike | None = None, title: str | None = None) -> Path:
    """Write the report (atomically) and return its path; default ``<first run>/report.html``."""
    if isinstance(runs, (Run, str, os.PathLike)):
        runs = [runs]
    if runs is None or isinstance(runs, bytes) or not hasattr(runs, "__iter__"):
        raise InputError(f"runs: expected a run or a list of runs (Run objects or directories), received {runs!r}")
    runs = list(runs)
    if not runs:
        raise InputError("runs: expected at least one run, received none")
    if title is not None and not isinstance(title, str):
        raise InputError(f"title: expected a string or None, received {title!r}")
    if path is None:
        first = runs[0]
        path = Path(first.path if isinstance(first, Run) else first) / "report.html"
    elif not isinstance(path, (str, os.PathLike)) or not str(path):
        raise InputError(f"path: expected an HTML file path, received {path!r}")
    path = Path(path)
    if path.is_dir():
        raise InputError(f"path: expected an HTML file path, received the directory {str(path)!r} (name a file in it, "
                         "e.g. report.html)")
    text = build_report(runs, title=title)
    return atomic_write(path, text)  # a full disk or a failed replace leaves no temporary behind
