"""The live dashboard: ``create_app(run_dir)`` → a read-only FastAPI app over the runs at or below ``run_dir``.

JSON API (all read-only; unknown runs, steps and files answer 404, never a file outside the run directory):

- ``GET /api/runs`` — the runs: id, name, path (relative), snapshots, last step
- ``GET /api/runs/{run}`` — summary (config, sessions, references, scalar names, counts)
- ``GET /api/runs/{run}/scalars[?names=a,b]`` — series per scalar name
- ``GET /api/runs/{run}/events`` — events, oldest first
- ``GET /api/runs/{run}/steps`` — snapshot steps
- ``GET /api/runs/{run}/samples/{step}.png`` — the sample grid of a snapshot (image samples)
- ``GET /api/runs/{run}/points/{step}`` — low-dimensional samples of a snapshot
- ``GET /api/runs/{run}/projection`` — the stored map's steps, bounds, scores and reference points
- ``GET /api/runs/{run}/projection/{step}`` — the map's points of one snapshot (≤ 5,000, 3 decimals)
- ``GET /api/runs/{run}/files/{path}`` — a file inside the run directory (e.g. ``report.html``)

``GET /`` is the one-page dashboard; it polls the API every 2 s, so it follows a run while training writes it.
Runs are opened read-only per request (SQLite WAL readers never block the writer).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import EvolensError, InputError
from ..store.run import Run, find_runs, is_run_dir, open_run

__all__ = ["create_app", "run_ids"]

ROOT_RUN_ID = "_"


def run_ids(root: Path) -> dict[str, Path]:
    """Stable ids of the runs at or below ``root``: the relative path with ``/`` → ``~`` (``_`` for root itself)."""
    out: dict[str, Path] = {}
    if is_run_dir(root):
        out[ROOT_RUN_ID] = root
    for path in find_runs(root):
        rel = path.resolve().relative_to(root)
        key = ROOT_RUN_ID if str(rel) == "." else rel.as_posix().replace("/", "~")
        out[key] = path.resolve()
    return out


def create_app(run_dir: str | os.PathLike):
    """A FastAPI app serving the runs at or below ``run_dir`` (one run or a folder of runs), read-only."""
    from fastapi import FastAPI, HTTPException, Query
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

    from . import data as views
    from .report import plotly_js
    from .page import PAGE

    root = Path(run_dir).resolve()
    if not root.is_dir():
        raise InputError(f"run_dir: expected a directory holding evolens runs, received {str(run_dir)!r}")
    app = FastAPI(title="evolens dashboard", docs_url=None, redoc_url=None)

    @contextmanager
    def opened(run_id: str) -> Iterator[Run]:
        path = run_ids(root).get(run_id)
        if path is None:
            raise HTTPException(404, f"unknown run {run_id!r}")
        try:
            run = open_run(path)
        except EvolensError as exc:
            raise HTTPException(404, str(exc)) from exc
        try:
            yield run
        except InputError as exc:  # unknown step, unknown scalar, ...
            raise HTTPException(404, str(exc)) from exc
        finally:
            run.close()

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE

    @app.get("/static/plotly.min.js")
    def plotly_bundle() -> Response:
        return Response(plotly_js(), media_type="application/javascript",
                        headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/api/runs")
    def list_runs() -> list[dict]:
        out = []
        for run_id, path in run_ids(root).items():
            try:
                with opened(run_id) as run:
                    steps = run.steps()
                    out.append({"id": run_id, "name": run.name, "path": str(path.relative_to(root)),
                                "n_snapshots": int(len(steps)), "last_step": int(steps[-1]) if len(steps) else None})
            except HTTPException:
                continue  # a directory that stopped being a readable run between scan and open
        return out

    @app.get("/api/runs/{run_id}")
    def summary(run_id: str) -> dict:
        with opened(run_id) as run:
            out = views.run_summary(run)
            out["id"], out["path"] = run_id, str(Path(out["path"]).resolve().relative_to(root))
            return out

    @app.get("/api/runs/{run_id}/scalars")
    def scalars(run_id: str, names: str | None = Query(None, description="comma-separated scalar names")) -> dict:
        with opened(run_id) as run:
            wanted = [n for n in names.split(",") if n] if names else None
            return views.scalar_series(run, wanted)

    @app.get("/api/runs/{run_id}/events")
    def events(run_id: str) -> list[dict]:
        with opened(run_id) as run:
            return views.event_list(run)

    @app.get("/api/runs/{run_id}/steps")
    def steps(run_id: str) -> list[int]:
        with opened(run_id) as run:
            return [int(s) for s in run.steps()]

    @app.get("/api/runs/{run_id}/samples/{step}.png")
    def samples_png(run_id: str, step: int, max_images: int = Query(100, ge=1, le=1024)) -> Response:
        with opened(run_id) as run:
            picture = views.sample_grid(run, step, max_images=max_images)
            if picture is None:
                raise HTTPException(404, f"the samples of run {run_id!r} are not images; see /points/{step}")
            scale = max(1, 280 // max(1, picture.shape[1]))
            return Response(views.png_bytes(picture, scale), media_type="image/png",
                            headers={"Cache-Control": "public, max-age=3600"})  # a snapshot never changes

    @app.get("/api/runs/{run_id}/points/{step}")
    def points(run_id: str, step: int) -> dict:
        with opened(run_id) as run:
            out = views.sample_points(run, step)
            if out is None:
                raise HTTPException(404, f"the samples of run {run_id!r} are not 1-D or 2-D points")
            return out

    @app.get("/api/runs/{run_id}/projection")
    def projection(run_id: str) -> dict:
        with opened(run_id) as run:
            meta = views.projection_meta(run)
            if meta is None:
                raise HTTPException(404, f"run {run_id!r} has no stored projection")
            meta["reference"] = views.projection_points(run, meta, None)
            return meta

    @app.get("/api/runs/{run_id}/projection/{step}")
    def projection_step(run_id: str, step: int, max_points: int = Query(5000, ge=1, le=50_000)) -> JSONResponse:
        with opened(run_id) as run:
            meta = views.projection_meta(run)
            if meta is None:
                raise HTTPException(404, f"run {run_id!r} has no stored projection")
            return JSONResponse(views.projection_points(run, meta, step, max_points=max_points),
                                headers={"Cache-Control": "public, max-age=3600"})

    @app.get("/api/runs/{run_id}/files/{file_path:path}")
    def run_file(run_id: str, file_path: str) -> FileResponse:
        base = run_ids(root).get(run_id)
        if base is None:
            raise HTTPException(404, f"unknown run {run_id!r}")
        target = (base / file_path).resolve()
        # only regular files inside this run's directory: no ../, no absolute paths, no symlinks out
        if not target.is_relative_to(base) or not target.is_file():
            raise HTTPException(404, f"no file {file_path!r} in run {run_id!r}")
        return FileResponse(target)

    return app
