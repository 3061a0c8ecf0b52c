"""Dashboard speed on long runs: API latencies and the browser's first render, against the targets of issue 19.

1. **API on a long run** — a run of 10,000 snapshots and 1,000,000 scalars (100 series × 10,000 steps, 10 of
   them per-class) and 100 events, served by the real app under uvicorn and asked over HTTP, each request
   ``--repeats`` times: p50 and p99 of the run summary (the page polls it every 2 s; target ≤ 100 ms p50), one
   scalar series (target ≤ 200 ms), the incremental ``?since=`` reads the page makes while it follows a run, the
   panels, and — for scale only — every series at once. Measured once on the finished run and once while a
   writer appends a snapshot and 100 scalars every 50 ms.
2. **First render in Chromium** — a run of 100 snapshots × 5,000 map points (plus 2,000 reference points):
   the still map drawn while plotly.js parses, the interactive map, and the first metric panel, in ms since
   navigation, on a person's first visit (a fresh browser profile) and a returning one (the third visit with
   that profile: plotly.js compiled from Chromium's code cache), median of ``--loads`` profiles; target ≤ 1 s.

    python benchmarks/dashboard.py [--snapshots 10000] [--repeats 50] [--loads 5]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
from tqdm import tqdm

from evolens.store.derived import PROJECTION_COORDS, PROJECTION_REFERENCE_COORDS
from evolens.store.run import open_run
from evolens.store.writer import RunWriter

CHROMIUM = os.environ.get("EVOLENS_CHROMIUM", "/usr/bin/chromium")
N_SERIES = 100


def series_names() -> list[str]:
    """100 scalar names as evolens writes them: FID and KID overall and per class, and training losses."""
    names = ["quality/fid@enc~train", "quality/kid@enc~train"]
    names += [f"quality/fid/class={c}@enc~train" for c in range(10)]
    return names + [f"train/loss_{i}" for i in range(N_SERIES - len(names))]


def make_long_run(run_dir: Path, n_snapshots: int, *, start: int = 0, writer: RunWriter | None = None,
                  pause: float = 0.0, stop: threading.Event | None = None) -> None:
    """Append ``n_snapshots`` snapshots (64 2-D samples each), 100 scalars per step and an alert every 100 steps."""
    names = series_names()
    samples = np.random.default_rng(0).random((64, 2), dtype=np.float32)
    own = writer is None
    writer = writer or RunWriter(run_dir, name="long")
    try:
        steps = range(start, start + n_snapshots)
        for step in (tqdm(steps, desc="writing the long run", unit="snapshot") if not pause else steps):
            if stop is not None and stop.is_set():
                return
            writer.write_snapshot(step, {"samples": samples}, wall_time=float(step))
            writer.write_scalars(step, {n: float(np.sin(step / 100 + i)) for i, n in enumerate(names)},
                                 wall_time=float(step))
            if step % 100 == 0:
                writer.write_event("alert", f"alert at {step}", step=step, level="alert")
            if pause:
                time.sleep(pause)
    finally:
        if own:
            writer.close()


def make_map_run(run_dir: Path, n_snapshots: int = 100, n_points: int = 5000) -> None:
    """A run of ``n_snapshots`` snapshots whose stored map has ``n_points`` points each (10 labelled clusters that
    tighten over training) and 2,000 reference points, plus a few metric series."""
    rng = np.random.default_rng(0)
    ids = np.array([f"p{i}" for i in range(n_points)])
    labels = rng.integers(0, 10, n_points)
    centres = rng.normal(0, 30, (10, 2))
    with RunWriter(run_dir, name="map") as writer:
        for step in range(n_snapshots):
            writer.write_snapshot(step, {"samples": rng.random((n_points, 2), dtype=np.float32), "probe_ids": ids,
                                         "labels": labels}, wall_time=0.0, capture_seconds=0.0)
            writer.write_scalars(step, {"loss/train": 2.0 / (1 + step), "quality/fid@enc~train": 100.0 / (1 + step),
                                        **{f"quality/fid/class={c}@enc~train": 100.0 / (1 + step) + c
                                           for c in range(10)}})
    with open_run(run_dir) as run:
        for step in range(n_snapshots):
            spread = 20.0 * (1 - step / n_snapshots) + 2.0
            coords = centres[labels] + rng.normal(0, spread, (n_points, 2))
            run.add_derived(PROJECTION_COORDS, coords.astype(np.float32), encoder_id="enc", source="map", step=step)
        run.add_derived(PROJECTION_REFERENCE_COORDS, rng.normal(0, 30, (2000, 2)).astype(np.float32),
                        encoder_id="enc", source="map")
        run.add_event("projection", "synthetic map", data={"projection_id": "map", "encoder_id": "enc",
                                                            "layout": "free", "steps": list(range(n_snapshots)),
                                                            "scores": {}})


def serve(root: Path):
    """The dashboard app under uvicorn on a free localhost port, in a thread; returns (url, server)."""
    import uvicorn

    from evolens.views.server import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(root), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


def latency(url: str, repeats: int) -> tuple[float, float, int]:
    """p50 and p99 (ms) of ``repeats`` GETs of ``url``, and the answer's size in bytes."""
    times, size = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        with urllib.request.urlopen(url) as answer:
            size = len(answer.read())
        times.append(1000 * (time.perf_counter() - start))
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(round(0.99 * (len(times) - 1))))], size


def api_table(url: str, run_id: str, repeats: int, last_step: int) -> list[tuple[str, float, float, int, str]]:
    """(request, p50 ms, p99 ms, bytes, target) for the requests the page makes."""
    base = f"{url}/api/runs/{run_id}"
    with urllib.request.urlopen(base) as answer:
        last_event = json.loads(answer.read())["cursor"]["event"]
    fid = urllib.request.quote("quality/fid@enc~train")
    requests = [
        ("summary (polled every 2 s)", f"{base}", "≤ 100 ms p50"),
        ("one scalar series (thinned to 2,000 points)", f"{base}/scalars?names={fid}", "≤ 200 ms"),
        ("one panel: FID + 10 class series", f"{base}/scalars?names=" + ",".join(
            urllib.request.quote(n) for n in series_names()[:1] + series_names()[2:12]), "≤ 200 ms"),
        ("all series grown: ?since= the last 10 steps", f"{base}/scalars?since={last_step - 10}", ""),
        ("events ?since= the newest but 10", f"{base}/events?since={last_event - 10}", ""),
        ("steps ?since= the last 10", f"{base}/steps?since={last_step - 10}", ""),
        ("panels", f"{base}/panels", ""),
        ("every series at once (not asked by the page)", f"{base}/scalars", ""),
    ]
    out = []
    for label, address, target in tqdm(requests, desc="API latencies", unit="request"):
        p50, p99, size = latency(address, repeats if "every series" not in label else max(3, repeats // 10))
        out.append((label, p50, p99, size, target))
    return out


def first_render(url: str, loads: int) -> dict[str, dict[str, float]]:
    """Median in-page times (ms since navigation) of the still map, plotly.js ready, the interactive map and the
    first panel: on a person's first visit (a fresh browser profile) and on a returning one (the third visit
    with the same profile: Chromium keeps plotly.js compiled in its code cache from the second visit on)."""
    from playwright.sync_api import sync_playwright

    marks = "() => ({preview: window.__evolens.renders.preview || null, plotly: window.__evolens.renders.plotly " \
            "|| null, map: window.__evolens.renders.first, panel: window.__evolens.renders.firstPanel || null})"
    wait = "() => window.__evolens && window.__evolens.renders.first !== undefined && " \
           "window.__evolens.renders.firstPanel !== undefined"
    first, returning = [], []
    with sync_playwright() as p:
        for _ in tqdm(range(loads), desc="first renders", unit="profile"):
            with tempfile.TemporaryDirectory() as profile:
                context = p.chromium.launch_persistent_context(
                    profile, executable_path=CHROMIUM, headless=True, viewport={"width": 1400, "height": 1000},
                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
                for visit in range(3):
                    page = context.new_page()
                    page.goto(url)
                    page.wait_for_function(wait, timeout=60_000)
                    if visit in (0, 2):
                        (first if visit == 0 else returning).append(page.evaluate(marks))
                    page.close()
                context.close()

    def median(rows: list[dict]) -> dict[str, float]:
        return {k: round(statistics.median(r[k] for r in rows if r[k] is not None), 1)
                for k in rows[0] if any(r[k] is not None for r in rows)}

    return {"first visit": median(first), "returning visit": median(returning)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshots", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--loads", type=int, default=5)
    args = parser.parse_args()
    results: dict = {"snapshots": args.snapshots, "scalars": args.snapshots * N_SERIES}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_long_run(root / "long", args.snapshots)
        url, server = serve(root)
        try:
            idle = api_table(url, "long", args.repeats, args.snapshots - 1)
            stop = threading.Event()
            with RunWriter(root / "long") as writer:  # a resumed capture appending while the page reads
                thread = threading.Thread(target=make_long_run, args=(root / "long", 10**6),
                                          kwargs={"start": args.snapshots, "writer": writer, "pause": 0.05,
                                                  "stop": stop}, daemon=True)
                thread.start()
                try:
                    busy = api_table(url, "long", args.repeats, args.snapshots - 1)
                finally:
                    stop.set()
                    thread.join()
        finally:
            server.should_exit = True
        results["api"] = {"idle": idle, "while_writing": busy}
        print(f"\nAPI on a run of {args.snapshots:,} snapshots and {args.snapshots * N_SERIES:,} scalars "
              "(HTTP, uvicorn, one client):\n")
        print("| request | p50 ms | p99 ms | p50 ms while a writer appends | bytes | target |")
        print("|---|---|---|---|---|---|")
        for (label, p50, p99, size, target), (_, b50, _, _, _) in zip(idle, busy):
            print(f"| {label} | {p50:.1f} | {p99:.1f} | {b50:.1f} | {size:,} | {target} |")

        if Path(CHROMIUM).exists():
            make_map_run(root / "map")
            url, server = serve(root / "map")
            try:
                renders = first_render(url, args.loads)
            finally:
                server.should_exit = True
            results["first_render_ms"] = renders
            print(f"\nFirst render of 100 snapshots × 5,000 map points in Chromium (ms since navigation, median "
                  f"of {args.loads}; target ≤ 1,000):\n")
            print("| visit | still map (canvas) | plotly.js ready | interactive map | first metric panel |")
            print("|---|---|---|---|---|")
            for cache, row in renders.items():
                print(f"| {cache} | {row.get('preview', '—')} | {row.get('plotly', '—')} | {row['map']} | "
                      f"{row.get('panel', '—')} |")
        else:
            print(f"\n(no Chromium at {CHROMIUM}: first render not measured)")
    print("\n" + json.dumps(results))


if __name__ == "__main__":
    main()
