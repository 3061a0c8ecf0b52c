"""The report and the live dashboard in a real headless Chromium (Debian's, driven by Playwright).

Checks that charts render (plot elements present, no console errors, no network requests leaving the machine),
that moving the snapshot sliders changes the projection and the samples, and that the dashboard follows a run
while it is being written. Screenshots and timings go to tests/artifacts/ (not committed). `make test` installs
Chromium with apt when it is missing; set EVOLENS_REQUIRE_BROWSER=1 to fail instead of skip without it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = os.environ.get("EVOLENS_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]

if not Path(CHROMIUM).exists() and os.environ.get("EVOLENS_REQUIRE_BROWSER") != "1":
    pytest.skip(f"no Chromium at {CHROMIUM} (make test installs Debian's chromium)", allow_module_level=True)

playwright = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield b
        b.close()


class Page:
    """A page that records console errors, page errors and every request that is not local."""

    def __init__(self, browser, allowed_prefixes: tuple[str, ...]) -> None:
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.errors: list[str] = []
        self.outside: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

        def route(r):
            url = r.request.url
            if url.startswith(allowed_prefixes) or url.startswith("data:"):
                r.continue_()
            else:
                self.outside.append(url)
                r.abort()

        self.page.route("**/*", route)

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path), full_page=True)
        return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def serve():
    """Start ``create_app(root)`` under uvicorn on a free localhost port (in a thread); stop at the end."""
    import uvicorn

    from evolens.views.server import create_app

    servers = []

    def start(root: Path) -> str:
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(root), host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.time() + 20
        while not server.started:
            if time.time() > deadline:
                raise RuntimeError("the dashboard did not start within 20 s")
            time.sleep(0.05)
        servers.append((server, thread))
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


def _trace_x(page, div: str, first: int) -> list:
    """x of every point in traces ``first`` onwards (the map draws one trace per label after the reference)."""
    # _fullData holds the decoded arrays (plotly.py ships typed arrays as base64 in data)
    return page.evaluate(f"() => document.getElementById('{div}')._fullData.slice({first})"
                         ".flatMap(t => Array.from(t.x || []))")


def _click_probe(page, div: str) -> str:
    """Click the first point of the map's first probe trace with the mouse; return the probe id clicked."""
    where = page.evaluate(f"""() => {{
        const gd = document.getElementById('{div}'), t = gd._fullData[1], xa = gd._fullLayout.xaxis,
              ya = gd._fullLayout.yaxis, box = gd.getBoundingClientRect();
        return {{x: box.left + xa._offset + xa.l2p(t.x[0]), y: box.top + ya._offset + ya.l2p(t.y[0]),
                 id: t.customdata[0]}}; }}""")
    page.mouse.move(where["x"], where["y"], steps=5)
    # plotly clicks the point its hover holds: wait until the hover has moved onto the probe
    page.wait_for_function(f"""() => {{ const h = document.getElementById('{div}')._hoverdata;
        return h && h.length && h[0].customdata === {json.dumps(where["id"])}; }}""", timeout=10_000)
    page.mouse.click(where["x"], where["y"])
    return where["id"]


def _hover_probe(page, div: str) -> None:
    """Move the mouse onto the map's first probe point (and a little around it, as a person would)."""
    where = page.evaluate(f"""() => {{
        const gd = document.getElementById('{div}'), t = gd._fullData[1], xa = gd._fullLayout.xaxis,
              ya = gd._fullLayout.yaxis, box = gd.getBoundingClientRect();
        return {{x: box.left + xa._offset + xa.l2p(t.x[0]), y: box.top + ya._offset + ya.l2p(t.y[0])}}; }}""")
    page.mouse.move(where["x"] + 30, where["y"] + 30)
    page.mouse.move(where["x"], where["y"], steps=5)


def _hover_reference(page, div: str) -> None:
    """Move the mouse onto the map's reference point (trace 0) farthest from every probe point, so the hover
    cannot land on a probe instead."""
    where = page.evaluate(f"""() => {{
        const gd = document.getElementById('{div}'), xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis,
              box = gd.getBoundingClientRect();
        const px = (t, i) => [box.left + xa._offset + xa.l2p(t.x[i]), box.top + ya._offset + ya.l2p(t.y[i])];
        const ref = gd._fullData[0], probes = gd._fullData.slice(1).flatMap(t => Array.from(t.x, (_, i) => px(t, i)));
        let best = null, bestGap = -1;
        for (let i = 0; i < ref.x.length; i++) {{
            const [x, y] = px(ref, i), others = Array.from(ref.x, (_, j) => px(ref, j)).filter((_, j) => j !== i);
            const gap = Math.min(...probes.concat(others).map(([a, b]) => Math.hypot(a - x, b - y)));
            if (gap > bestGap) {{ bestGap = gap; best = {{x, y}}; }}
        }}
        return best; }}""")
    page.mouse.move(where["x"] + 30, where["y"] + 30)
    page.mouse.move(where["x"], where["y"], steps=5)


def _thumbnail_shown(page, src_part: str) -> None:
    page.wait_for_function("(part) => { const t = document.querySelector('.map-thumb'); return t && "
                           "t.style.display === 'block' && t.src.includes(part) && t.complete && t.naturalWidth > 0; }",
                           arg=src_part, timeout=10_000)


def _requests_in_flight_at_most_one(page) -> None:
    most = page.evaluate("() => Object.fromEntries(Object.entries(window.__evolens.requests).map(([k, v]) => [k, v.max]))")
    assert most and max(most.values()) == 1, most


def _trajectory(page, div: str) -> dict | None:
    return page.evaluate(f"""() => {{ const t = document.getElementById('{div}')._fullData
        .find(t => t.name.startsWith('trajectory of probe')); return t ? {{name: t.name, n: t.x.length}} : null; }}""")


def test_report_renders_offline_and_its_sliders_move(browser, view_root, tmp_path):
    from evolens.views.report import write_report

    path = write_report([view_root / "demo-like"], tmp_path / "report.html")
    p = Page(browser, ("file://",))
    p.page.goto(path.as_uri())
    p.page.wait_for_selector("#projection-0 .main-svg")
    assert p.page.locator(".js-plotly-plot").count() >= 3  # metric groups + projection
    assert p.page.locator("#metrics .main-svg").count() >= 2
    assert p.page.locator("#alerts-table tr.alert").count() == 1
    # the sample slider swaps the grid picture
    before = p.page.get_attribute("#grid-0", "src")
    p.page.locator("#grid-slider").fill("5")
    assert p.page.get_attribute("#grid-0", "src") != before
    assert p.page.inner_text("#grid-step") == "step 5"
    # the map's snapshot slider: the last snapshot's points differ from the first's
    first = _trace_x(p.page, "projection-0", 1)
    assert len(first) == 30
    p.page.locator("#projection-slider-0").fill("5")
    p.page.wait_for_function(
        "(first) => JSON.stringify(document.getElementById('projection-0')._fullData.slice(1)"
        ".flatMap(t => Array.from(t.x || []))) !== first",
        arg=json.dumps(first), timeout=10_000)
    assert p.page.inner_text("#projection-step-0") == "step 5"
    # hover a probe: its sample appears beside the cursor
    _hover_probe(p.page, "projection-0")
    p.page.wait_for_function("() => { const t = document.querySelector('.map-thumb');"
                             " return t && t.style.display === 'block' && t.complete && t.naturalWidth > 0; }",
                             timeout=10_000)
    p.shot("report-map-hover.png")
    # click a probe: its trajectory over the six snapshots is drawn
    probe = _click_probe(p.page, "projection-0")
    p.page.wait_for_function("() => document.getElementById('projection-0')._fullData"
                             ".some(t => t.name.startsWith('trajectory of probe'))", timeout=10_000)
    assert _trajectory(p.page, "projection-0") == {"name": f"trajectory of probe {probe}", "n": 6}
    p.shot("report.png")
    assert p.errors == [], p.errors
    assert p.outside == [], p.outside


def test_dashboard_renders_and_the_projection_slider_changes_the_map(browser, view_root, serve):
    url = serve(view_root)
    p = Page(browser, (url,))
    p.page.goto(url + "/?run=demo-like")
    p.page.wait_for_function("() => window.__evolens && window.__evolens.renders.projection !== undefined")
    p.page.wait_for_selector('.metric-plot[data-title^="quality/fid"] .main-svg')
    # one panel per metric: loss and FID curves, FID's classes as a heatmap with hover values
    assert p.page.locator("#metric-plots .js-plotly-plot").count() == 3
    fid_title = p.page.evaluate("""() => document.querySelector('.metric-plot[data-title^="quality/fid"]')
                                   ._fullLayout.title.text""")
    assert "pixels" in fid_title and "vs train" in fid_title and "lower is better" in fid_title, fid_title
    heat = p.page.evaluate("""() => { const t = document.querySelector('.metric-heatmap')._fullData[0];
                                      return {type: t.type, rows: t.z.length, hover: t.hovertemplate}; }""")
    assert heat["type"] == "heatmap" and heat["rows"] == 10 and "value" in heat["hover"], heat
    assert "class 6 preservation" in p.page.inner_text("#alerts-body")
    assert p.page.inner_text("#n-snapshots") == "6"
    last = _trace_x(p.page, "projection-plot", 1)  # it opens on the newest snapshot
    p.page.locator("#projection-slider").fill("0")
    p.page.wait_for_function("() => window.__evolens.renders.projection.step === 0")
    assert _trace_x(p.page, "projection-plot", 1) != last
    assert p.page.inner_text("#projection-step") == "step 0"
    _hover_probe(p.page, "projection-plot")  # the hover thumbnail comes from /samples/{step}/probe.png
    p.page.wait_for_function("() => { const t = document.querySelector('.map-thumb');"
                             " return t && t.style.display === 'block' && t.complete && t.naturalWidth > 0; }",
                             timeout=10_000)
    # hover a reference point: its training image (from the map's description of its reference subsample)
    _hover_reference(p.page, "projection-plot")
    _thumbnail_shown(p.page, "projection/reference.png?point=")
    probe = _click_probe(p.page, "projection-plot")  # the dashboard fetches the probe's track from the API
    p.page.wait_for_function("() => document.getElementById('projection-plot')._fullData"
                             ".some(t => t.name.startsWith('trajectory of probe'))", timeout=10_000)
    assert _trajectory(p.page, "projection-plot") == {"name": f"trajectory of probe {probe}", "n": 6}
    # colour by: class, the logged per-sample attribute, or the snapshot trail
    options = p.page.eval_on_selector_all("#projection-colour option", "os => os.map(o => o.value)")
    assert options == ["class", "attribute:stroke", "snapshot"], options
    p.page.select_option("#projection-colour", "attribute:stroke")
    p.page.wait_for_function("() => window.__evolens.renders.projection.colour === 'attribute:stroke'")
    names = p.page.evaluate("() => document.getElementById('projection-plot')._fullData.map(t => t.name)")
    assert [n for n in names if n.startswith("stroke")] == ["stroke 0", "stroke 1", "stroke 2"], names
    p.page.locator("#projection-slider").fill("5")
    p.page.select_option("#projection-colour", "snapshot")
    p.page.wait_for_function("() => window.__evolens.renders.projection.colour === 'snapshot'"
                             " && window.__evolens.renders.projection.step === 5")
    names = p.page.evaluate("() => document.getElementById('projection-plot')._fullData.map(t => t.name)")
    assert [n for n in names if n.startswith("step ")] == [f"step {s}" for s in range(6)], names
    p.shot("dashboard-map-colour.png")
    src = p.page.get_attribute("#grid", "src")
    p.page.locator("#samples-slider").fill("1")
    p.page.wait_for_function(f"() => document.getElementById('grid').src !== {json.dumps(src)}")
    p.page.wait_for_function("() => document.getElementById('grid').complete && document.getElementById('grid').naturalWidth > 0")
    # the other run, from the run picker
    p.page.select_option("#run-select", "group~other")
    p.page.wait_for_function("() => document.getElementById('n-snapshots') && document.getElementById('n-snapshots').textContent === '4'")
    p.shot("dashboard.png")
    _requests_in_flight_at_most_one(p.page)
    assert p.errors == [], p.errors
    assert p.outside == [], p.outside


def test_dashboard_follows_a_run_while_it_is_written(browser, serve, tmp_path):
    from evolens.store.writer import RunWriter

    root = tmp_path / "live"
    writer = RunWriter(root / "training", name="training")
    rng = np.random.default_rng(0)

    def write(step: int) -> None:
        writer.write_snapshot(step, {"samples": rng.random((16, 1, 8, 8), dtype=np.float32)}, wall_time=time.time(),
                              capture_seconds=0.0)
        writer.write_scalars(step, {"loss/train": 1.0 / (step + 1)})

    write(0)
    url = serve(root)
    p = Page(browser, (url,))
    p.page.goto(url)
    p.page.wait_for_function("() => document.getElementById('n-snapshots') && document.getElementById('n-snapshots').textContent === '1'")
    for step in (1, 2, 3):
        write(step)
    writer.close()
    p.page.wait_for_function("() => document.getElementById('n-snapshots').textContent === '4'", timeout=15_000)
    p.page.wait_for_function("() => document.querySelector('.metric-plot[data-title^=\"loss\"]')._fullData[0].x.length"
                             " === 4", timeout=15_000)
    assert p.page.inner_text("#samples-step") == "step 3"  # the samples view follows the newest snapshot
    p.shot("dashboard-live.png")
    assert p.errors == [], p.errors


LIVE_TRAINER = r"""
import sys, time
import numpy as np, torch
import evolens
from evolens.analyses import Live
from evolens.data import digits
data = digits("train")
live = Live(encoder="pixels", analyses=("quality", "map"), metrics=("fid", "vendi"), map_after=2,
            map_params={"n_iter": 60})
rng = np.random.default_rng(0)
noise = rng.random((40, 1, 8, 8)).astype(np.float32)
state = {"t": 0.0}
monitor = evolens.Monitor(sys.argv[1], lambda p: torch.from_numpy(state["t"] * data.images[:40] + (1 - state["t"]) * noise),
                          every=1, analyze=live, probes=evolens.Probes.from_noise(40, 2, num_classes=10))
monitor.add_reference("train", data.images[:200], data.labels[:200])
for step in range(int(sys.argv[2])):
    state["t"] = step / int(sys.argv[2])
    monitor.step(step, loss=1.0 / (step + 1))
    time.sleep(0.4)
monitor.close()
"""


def test_dashboard_shows_live_analysis_while_a_run_trains(browser, serve, tmp_path):
    """A model trains with live analysis in another process; the dashboard shows the quality curve (named with
    its encoder) and the map gaining snapshots while it trains."""
    import subprocess
    import sys

    root = tmp_path / "live-analysis"
    trainer = subprocess.Popen([sys.executable, "-c", LIVE_TRAINER, str(root / "run"), "40"])  # ~16 s of training
    try:
        while not (root / "run" / "runs.sqlite").exists():
            time.sleep(0.1)
        url = serve(root)
        p = Page(browser, (url,))
        p.page.goto(url)
        p.page.wait_for_function("() => { const d = document.querySelector('.metric-plot[data-title^=\"quality/fid\"]');"
                                 " return d && d._fullData && d._fullData.length > 0; }", timeout=60_000)
        title = p.page.evaluate("() => document.querySelector('.metric-plot[data-title^=\"quality/fid\"]').dataset.title")
        assert "pixels" in title, title  # the panel names the encoder that produced the curve
        p.page.wait_for_function("() => window.__evolens.projection && window.__evolens.projection.steps.length >= 2",
                                 timeout=60_000)
        first = p.page.evaluate("() => window.__evolens.projection.steps.length")
        p.page.wait_for_function(f"() => window.__evolens.projection.steps.length > {first}", timeout=60_000)
        # the page judged, not the trainer's timing: it drew a partial run (fewer map snapshots than the run will
        # have) and then more of it without a reload, so it updated while the run was being written
        assert first < 40
        status = p.page.inner_text("#status")
        assert trainer.poll() is not None or "live analysis" in status, status  # said so while it trained
        p.shot("dashboard-live-analysis.png")
        # when training and analysis are over, what the page assembled from its incremental reads (?since=) is
        # what a full read of the run serves
        assert trainer.wait(timeout=120) == 0
        p.page.wait_for_function("() => document.getElementById('status').textContent.includes('last step 39')"
                                 " && document.getElementById('status').textContent.includes('up to date')",
                                 timeout=120_000)
        served = p.page.evaluate("async () => await (await fetch('/api/runs/run/scalars')).json()")
        for title, name in (("quality/fid", next(n for n in served if n.startswith("quality/fid@"))), ("loss", "loss")):
            p.page.wait_for_function(
                "([title, n]) => { const d = document.querySelector(`.metric-plot[data-title^='${title}']`);"
                " return d && d._fullData[0].x.length === n; }", arg=[title, len(served[name]["steps"])], timeout=30_000)
            drawn = p.page.evaluate("(title) => { const t = document.querySelector(`.metric-plot[data-title^='${title}']`)"
                                    "._fullData[0]; return {steps: Array.from(t.x), values: Array.from(t.y)}; }", title)
            assert drawn["steps"] == served[name]["steps"] and drawn["values"] == pytest.approx(served[name]["values"])
        _requests_in_flight_at_most_one(p.page)
        assert p.errors == [], p.errors
    finally:
        trainer.wait(timeout=120)


def test_dashboard_with_100_snapshots_of_5000_points(browser, serve, tmp_path):
    """Responsiveness target: projection payload < 1 MB per snapshot (asserted in the API tests too) and the
    first render time, reported in tests/artifacts/timings.json (not asserted)."""
    from evolens.store.derived import PROJECTION_COORDS, PROJECTION_REFERENCE_COORDS
    from evolens.store.run import open_run
    from evolens.store.writer import RunWriter

    rng = np.random.default_rng(0)
    run_dir = tmp_path / "big" / "run"
    ids = np.array([f"p{i}" for i in range(5000)])
    labels = rng.integers(0, 10, 5000)
    centres = rng.normal(0, 30, (10, 2))
    with RunWriter(run_dir, name="big") as writer:
        for step in range(100):
            writer.write_snapshot(step, {"samples": rng.random((5000, 2), dtype=np.float32), "probe_ids": ids,
                                         "labels": labels}, wall_time=0.0, capture_seconds=0.0)
    with open_run(run_dir) as run:
        for step in range(100):
            spread = 20.0 * (1 - step / 100) + 2.0
            coords = centres[labels] + rng.normal(0, spread, (5000, 2))
            run.add_derived(PROJECTION_COORDS, coords.astype(np.float32), encoder_id="enc", source="big", step=step)
        run.add_derived(PROJECTION_REFERENCE_COORDS, rng.normal(0, 30, (2000, 2)).astype(np.float32),
                        encoder_id="enc", source="big")
        run.add_event("projection", "synthetic map", data={"projection_id": "big", "encoder_id": "enc",
                                                            "layout": "free", "steps": list(range(100)), "scores": {}})
    url = serve(tmp_path / "big")
    p = Page(browser, (url,))
    start = time.perf_counter()
    p.page.goto(url)
    p.page.wait_for_function("() => window.__evolens && window.__evolens.renders.projection !== undefined", timeout=60_000)
    first_render_s = time.perf_counter() - start
    assert p.page.evaluate("() => window.__evolens.renders.projection.points") == 5000
    slider_ms = []
    for value in ("10", "50", "90"):
        t = time.perf_counter()
        p.page.locator("#projection-slider").fill(value)
        p.page.wait_for_function(f"() => window.__evolens.renders.projection.step === {int(value)}")
        slider_ms.append(round(1000 * (time.perf_counter() - t)))
    # every one of the 100 frames fetched once: the page keeps the 64 most recently used, the last one among them
    kept = p.page.evaluate("async () => { for (let s = 0; s < 100; s++) await frame('run', s);"
                           " return [window.__evolens.frames.size, window.__evolens.frames.has('run@99'),"
                           " window.__evolens.frames.has('run@0')]; }")
    assert kept == [64, True, False], kept
    payload = len(p.page.evaluate("async () => await (await fetch('/api/runs/run/projection/50')).text()"))
    p.shot("dashboard-100x5000.png")
    ARTIFACTS.mkdir(exist_ok=True)
    # in-page clocks (ms since navigation start): when the page script started (plotly.js parsed) and when the
    # first map was drawn
    marks = p.page.evaluate("() => ({script_start_ms: Math.round(window.__evolens.t0),"
                            " plotly_ready_ms: Math.round(window.__evolens.renders.plotly || 0),"
                            " first_frame_ms: Math.round(window.__evolens.renders.firstFrame),"
                            " map_preview_ms: Math.round(window.__evolens.renders.preview || 0),"
                            " first_map_ms: Math.round(window.__evolens.renders.first)})")
    timings = {"first_render_s": round(first_render_s, 3), **marks, "slider_ms": slider_ms, "payload_bytes": payload}
    (ARTIFACTS / "timings.json").write_text(json.dumps(timings, indent=2))
    print("dashboard 100 x 5000:", timings)
    assert payload < 1_000_000
    assert p.errors == [], p.errors


XSS = ('</script><script>window.__xss=(window.__xss||0)+1</script><img src=x onerror="window.__xss=1">'
       '<svg onload="window.__xss=1"></svg>\u2028')


def _hostile_run(root: Path) -> Path:
    """A run whose name, config, probe ids, reference name, scalar names and event kinds/messages carry script
    payloads, with a map (the probe ids reach its hover text)."""
    import torch

    from evolens import Monitor, Probes, analyses

    rng = np.random.default_rng(0)
    probes = Probes.from_images(rng.random((20, 1, 8, 8), dtype=np.float32), labels=np.arange(20) % 4,
                                ids=[f"{XSS}{i}" for i in range(20)])
    run_dir = root / "hostile"
    with Monitor(run_dir, lambda p: {"samples": p.images + 0.1 * torch.rand_like(p.images), "labels": p.labels},
                 every=1, probes=probes, name=f"run {XSS}", config={XSS: XSS, "lr": XSS}) as monitor:
        monitor.add_reference(f"train{XSS}", rng.random((40, 1, 8, 8), dtype=np.float32), np.arange(40) % 4)
        monitor.add_reference("train", rng.random((40, 1, 8, 8), dtype=np.float32), np.arange(40) % 4)
        for step in range(4):
            monitor.log(step, **{f"loss/{XSS}": float(step), "loss/train": 1.0 / (step + 1)})
            monitor.step(step)
        monitor.event("alert", f"message {XSS}", step=2, level="alert")
        monitor.event(f"kind{XSS}", f"another {XSS}", step=3, level="warning")
    analyses.projection(run_dir, encoder="pixels", max_reference=40, progress=False, n_iter=100)
    return run_dir


def _assert_nothing_ran(p: Page) -> None:
    assert p.page.evaluate("() => window.__xss") is None
    # no element made from a payload: no script that is the payload, no img/svg carrying its handler
    assert p.page.locator("script:not([src])").evaluate_all(
        "(nodes) => nodes.filter(n => n.textContent.trim().startsWith('window.__xss')).length") == 0
    assert p.page.locator("[onerror], [onload]").count() == 0


def test_script_payloads_in_a_run_never_execute(browser, serve, tmp_path):
    from evolens.views.report import write_report

    run_dir = _hostile_run(tmp_path)
    dialogs: list[str] = []
    # the static report, opened from disk
    report = write_report([run_dir], tmp_path / "report.html")
    p = Page(browser, ("file://",))
    p.page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    p.page.goto(report.as_uri())
    p.page.wait_for_selector("#projection-0 .main-svg")
    assert "run </script>" in p.page.inner_text("header h1")  # shown as text, whole
    assert "message </script>" in p.page.inner_text("#alerts-table")
    _assert_nothing_ran(p)
    p.shot("report-hostile.png")
    # the dashboard, and the report through the dashboard's /files/
    url = serve(tmp_path)
    d = Page(browser, (url,))
    d.page.on("dialog", lambda x: (dialogs.append(x.message), x.dismiss()))
    d.page.goto(url + "/?run=hostile")
    d.page.wait_for_function("() => window.__evolens && window.__evolens.renders.projection !== undefined")
    d.page.wait_for_selector('.metric-plot[data-title^="loss"] .main-svg')
    assert "run </script>" in d.page.inner_text("#summary-body")
    assert "message </script>" in d.page.inner_text("#alerts-body")
    d.page.hover("#projection-plot .nsewdrag")  # hover text holds the probe ids
    _assert_nothing_ran(d)
    d.shot("dashboard-hostile.png")
    shutil.copy(report, run_dir / "report.html")
    response = d.page.request.get(url + "/api/runs/hostile/files/report.html")
    assert response.headers["content-disposition"].startswith("attachment")
    assert dialogs == []
    assert d.outside == [] and p.outside == []


def test_memorisation_gallery_in_the_report_and_the_dashboard(browser, view_root, serve, tmp_path):
    from evolens import analyses
    from evolens.views.report import write_report

    run_dir = tmp_path / "runs" / "memorised"
    shutil.copytree(view_root / "demo-like", run_dir)
    analyses.proximity(run_dir, encoder="pixels", heldout=None)  # stores each sample's nearest training items
    report = write_report([run_dir], tmp_path / "report.html")
    p = Page(browser, ("file://",))
    p.page.goto(report.as_uri())
    p.page.wait_for_selector("#gallery-0 .gallery-row")
    rows = p.page.locator("#gallery-0 .gallery-row")
    assert rows.count() == 24 and rows.first.locator("img").count() == 4  # the sample and its 3 nearest
    # the toy run's last snapshot is the training digits themselves: the closest sample is a copy, d = 0
    assert p.page.inner_text("#gallery-0 .gallery-row >> nth=0").count("d=0") >= 1
    assert p.page.evaluate("() => [...document.querySelectorAll('#gallery-0 img')].every(i => i.naturalWidth > 0)")
    p.shot("report-memorisation.png")
    url = serve(tmp_path / "runs")
    d = Page(browser, (url,))
    d.page.goto(url + "/?run=memorised")
    d.page.wait_for_selector("#gallery .gallery-row")
    assert d.page.locator("#gallery .gallery-row").count() == 24
    d.page.locator("#memorisation").scroll_into_view_if_needed()
    d.shot("dashboard-memorisation.png")
    assert p.errors == [] and d.errors == [], (p.errors, d.errors)
    assert p.outside == [] and d.outside == []


def test_dashboard_overlays_a_run_group_in_the_same_panels(browser, serve, tmp_path):
    """Two runs side by side in one folder (split A/B): the group button overlays them — one curve per run in
    each metric panel, one class heatmap per run — and the page never has two requests of a kind in flight."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from conftest import make_view_run

    make_view_run(tmp_path / "biased", "split-a", steps=4, seed=0)
    make_view_run(tmp_path / "biased", "split-b", steps=4, seed=1)
    url = serve(tmp_path)
    p = Page(browser, (url,))
    p.page.goto(url + "/?run=biased~split-a")
    p.page.wait_for_selector('.metric-plot[data-title^="quality/fid"] .main-svg')
    p.page.click("#compare summary")
    p.page.click("text=overlay biased (2 runs)")
    p.page.wait_for_function("""() => { const d = document.querySelector('.metric-plot[data-title^="quality/fid"]');
                                        return d && d._fullData && d._fullData.length === 2; }""", timeout=20_000)
    curves = p.page.evaluate("""() => document.querySelector('.metric-plot[data-title^="quality/fid"]')._fullData
                                .map(t => ({name: t.name, n: t.x.length, color: t.line.color}))""")
    assert [c["name"] for c in curves] == ["biased/split-a", "biased/split-b"], curves
    assert all(c["n"] == 4 for c in curves) and curves[0]["color"] != curves[1]["color"], curves
    heatmaps = p.page.eval_on_selector_all(".metric-heatmap", "ds => ds.map(d => d.dataset.title)")
    assert len(heatmaps) == 2 and heatmaps[0].endswith("biased/split-a") and heatmaps[1].endswith("biased/split-b"), heatmaps
    p.page.wait_for_function("() => document.getElementById('status').textContent.includes('2 runs overlaid')")
    # the two series are the runs' own (read back from the API, not one run drawn twice)
    for c, run in zip(curves, ("biased~split-a", "biased~split-b")):
        served = p.page.evaluate(f"async () => await (await fetch('/api/runs/{run}/scalars')).json()")
        fid = next(v for k, v in served.items() if k.startswith("quality/fid@") and "class=" not in k)
        ys = p.page.evaluate(f"""() => Array.from(document.querySelector('.metric-plot[data-title^="quality/fid"]')
                                 ._fullData.find(t => t.name === '{run.replace("~", "/")}').y)""")
        assert ys == pytest.approx(fid["values"]), (run, ys, fid["values"])
    p.shot("dashboard-overlay.png")
    _requests_in_flight_at_most_one(p.page)
    assert p.errors == [], p.errors
    assert p.outside == [], p.outside
