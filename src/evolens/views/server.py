"""The live dashboard: ``create_app(run_dir)`` → a read-only FastAPI app over the runs at or below ``run_dir``.

JSON API (all read-only; unknown runs, steps and files answer 404, never a file outside the run directory):

- ``GET /api/runs`` — the runs: id, name, path (relative), group (the folder holding it), snapshots, last step
- ``GET /api/runs/{run}`` — summary (config, sessions, references, scalar names, counts, ``cursor``)
- ``GET /api/runs/{run}/scalars[?names=a,b][&since=STEP]`` — series per scalar name (only later points)
- ``GET /api/runs/{run}/panels`` — the metric panels: one per metric and context, overall and per-class names
- ``GET /api/runs/{run}/events[?since=ID]`` — events, oldest first (only those after event ``ID``)
- ``GET /api/runs/{run}/memorisation[?step=S]`` — each sample beside its nearest training images (the gallery)
- ``GET /api/runs/{run}/steps[?since=STEP]`` — snapshot steps (only later ones)
- ``GET /api/runs/{run}/samples/{step}.png`` — the sample grid of a snapshot (image samples)
- ``GET /api/runs/{run}/samples/{step}/probe.png?probe=ID`` — one probe's sample (the map's hover thumbnail)
- ``GET /api/runs/{run}/points/{step}`` — low-dimensional samples of a snapshot
- ``GET /api/runs/{run}/projection`` — the stored map's steps, bounds, scores and reference points
- ``GET /api/runs/{run}/projection/{step}`` — the map's points of one snapshot (≤ 5,000, 3 decimals), with the
  samples' integer attributes to colour by
- ``GET /api/runs/{run}/projection/track?probe=ID`` — one probe's positions over every snapshot of the map
- ``GET /api/runs/{run}/projection/reference.png?point=I`` — the reference image behind the map's reference point I
- ``GET /api/runs/{run}/files/{path}`` — a file inside the run directory (e.g. ``report.html``)

``GET /`` is the one-page dashboard; it polls the run's summary every 2 s and, when its ``cursor`` moved, fetches
only what is new (``since``), so it follows a run while training writes it without re-reading it. The summary is
made of aggregate queries over the store's primary keys (no snapshot or event is loaded): 5 ms at 10,000
snapshots and 1,000,000 scalars, so it needs no cache that could go stale (benchmarks/dashboard.py).
Runs are opened read-only per request (SQLite WAL readers never block the writer).

The dashboard has no accounts, so it keeps what it serves to its owner's browser:

- **Host check**: a request whose ``Host`` is not a loopback name or one of ``allowed_hosts`` gets 400 — a web page
  that rebinds its own DNS name to 127.0.0.1 cannot read the runs.
- **Headers on every answer**: a Content-Security-Policy that runs only the page's own scripts (by hash) and
  plotly.js (``'unsafe-eval'`` stays: plotly's WebGL traces compile shaders through ``new Function``), loads
  nothing from elsewhere and lets no other site frame the page; ``X-Content-Type-Options: nosniff``;
  ``Referrer-Policy: no-referrer``.
- ``/files/`` serves only listed types: images inline, everything else (HTML, SVG, JSON, arrays, checkpoints…) as
  an attachment, so a file of a run never runs as a page of the dashboard's origin; the store's database is not
  served.
- A run reached through a symlink that leaves the served folder is not listed.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import EvolensError, InputError, StoreIntegrityError
from ..store.run import Run, find_runs, is_run_dir, open_run

__all__ = ["LOOPBACK_HOSTS", "create_app", "host_allowed", "run_ids"]

ROOT_RUN_ID = "_"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})

# /files/: served inline (images), as attachments (the rest of the list); anything else answers 404
INLINE_FILE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
                     ".webp": "image/webp"}
ATTACHMENT_FILE_TYPES = frozenset({".html", ".htm", ".svg", ".json", ".jsonl", ".csv", ".tsv", ".txt", ".md", ".log",
                                   ".yaml", ".yml", ".npy", ".npz", ".pt", ".pth", ".ckpt", ".safetensors", ".pkl"})


def _host_name(header: str) -> str:
    """The host of a ``Host`` header without its port, lower case (``[::1]:8765`` → ``::1``)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def host_allowed(header: str | None, allowed: Iterable[str]) -> bool:
    """Whether a request's ``Host`` header names this dashboard: a loopback name or one of ``allowed``."""
    if not header:
        return False
    return _host_name(header) in LOOPBACK_HOSTS | {h.strip("[]").lower() for h in allowed}


def _content_security_policy(page: str) -> str:
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'"
                      for body in re.findall(r"<script>(.*?)</script>", page, flags=re.S))
    return ("default-src 'none'; "
            f"script-src 'self' 'unsafe-eval' {hashes}; "
            "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; "
            "font-src 'self' data:; worker-src blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


def run_ids(root: Path) -> dict[str, Path]:
    """Stable ids of the runs at or below ``root``: the relative path with ``/`` → ``~`` (``_`` for root itself)."""
    out: dict[str, Path] = {}
    if is_run_dir(root):
        out[ROOT_RUN_ID] = root
    for path in find_runs(root):
        if not path.resolve().is_relative_to(root):  # a symlink out of the served folder: not ours to serve
            continue
        rel = path.resolve().relative_to(root)
        key = ROOT_RUN_ID if str(rel) == "." else rel.as_posix().replace("/", "~")
        out[key] = path.resolve()
    return out


def create_app(run_dir: str | os.PathLike, *, allowed_hosts: Iterable[str] = ()):
    """A FastAPI app serving the runs at or below ``run_dir`` (one run or a folder of runs), read-only.

    ``allowed_hosts``: host names (besides loopback ones) the ``Host`` header may carry, e.g. the address the
    dashboard is bound to or the machine's name when it serves a network.
    """
    from fastapi import FastAPI, HTTPException, Query, Request
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response

    from . import data as views
    from .report import plotly_js
    from .page import PAGE

    root = Path(run_dir).resolve()
    if not root.is_dir():
        raise InputError(f"run_dir: expected a directory holding evolens runs, received {str(run_dir)!r}")
    if isinstance(allowed_hosts, str) or not all(isinstance(h, str) and h for h in allowed_hosts):
        raise InputError(f"allowed_hosts: expected a list of host names, received {allowed_hosts!r}")
    allowed = frozenset(h.strip("[]").lower() for h in allowed_hosts) - WILDCARD_HOSTS
    app = FastAPI(title="evolens dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    security_headers = {"Content-Security-Policy": _content_security_policy(PAGE), "X-Content-Type-Options": "nosniff",
                        "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
                        "Cross-Origin-Resource-Policy": "same-origin"}

    @app.exception_handler(StoreIntegrityError)
    async def damaged(request: Request, exc: StoreIntegrityError) -> JSONResponse:
        # a damaged array or database page: this answer says so, every other endpoint keeps answering
        return JSONResponse({"detail": f"damaged: {exc}"}, status_code=422)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if not host_allowed(request.headers.get("host"), allowed):
            response = PlainTextResponse("evolens: this dashboard answers only to its own host names (Host header "
                                         "refused); start it with --allow-host NAME to serve another", status_code=400)
        else:
            response = await call_next(request)
        for name, value in security_headers.items():
            response.headers.setdefault(name, value)
        return response

    def png_answer(data_uri: str) -> Response:
        """A thumbnail's PNG data URI as an image answer (a snapshot never changes: cached an hour)."""
        return Response(base64.b64decode(data_uri.split(",", 1)[1]), media_type="image/png",
                        headers={"Cache-Control": "public, max-age=3600"})

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
                    overview = run.snapshot_overview()
                    rel = path.relative_to(root)
                    # runs side by side in one folder form a group (e.g. the two splits of a biased-generalization
                    # experiment): the dashboard offers to overlay them together
                    out.append({"id": run_id, "name": run.name, "path": str(rel),
                                "group": str(rel.parent) if str(rel) != "." else None,
                                "n_snapshots": overview["n"], "last_step": overview["last_step"]})
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
    def scalars(run_id: str, names: str | None = Query(None, description="comma-separated scalar names"),
                since: int | None = Query(None, description="only the points after this step")) -> JSONResponse:
        with opened(run_id) as run:
            wanted = [n for n in names.split(",") if n] if names else None
            # JSONResponse: plain json.dumps, not FastAPI's element-by-element encoder (3x slower on long series)
            return JSONResponse(views.scalar_series(run, wanted, since=since))

    @app.get("/api/runs/{run_id}/panels")
    def panels(run_id: str) -> list[dict]:
        with opened(run_id) as run:
            return views.metric_panels(run.scalar_names())

    @app.get("/api/runs/{run_id}/events")
    def events(run_id: str, since: int | None = Query(None, description="only the events after this event id")
               ) -> list[dict]:
        with opened(run_id) as run:
            return views.event_list(run, since_id=since)

    @app.get("/api/runs/{run_id}/steps")
    def steps(run_id: str, since: int | None = Query(None, description="only the steps after this one")) -> list[int]:
        with opened(run_id) as run:
            return [int(s) for s in run.steps(since=since)]

    @app.get("/api/runs/{run_id}/samples/{step}/probe.png")
    def probe_png(run_id: str, step: int, probe: str = Query(..., description="a probe id")) -> Response:
        with opened(run_id) as run:
            thumbs = views.probe_thumbnails(run, step, [probe])
            if not thumbs or not thumbs[0]:
                raise HTTPException(404, f"no image sample of probe {probe!r} at step {step} in run {run_id!r}")
            return png_answer(thumbs[0])

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

    @app.get("/api/runs/{run_id}/memorisation")
    def memorisation(run_id: str, step: int | None = Query(None, description="default: the newest step with evidence")
                     ) -> dict | None:
        with opened(run_id) as run:  # null without evidence (a run not analysed yet is not an error to the page)
            return views.memorisation_gallery(run, step)

    @app.get("/api/runs/{run_id}/projection/track")
    def projection_track(run_id: str, probe: str = Query(..., description="a probe id")) -> dict:
        with opened(run_id) as run:
            meta = views.projection_meta(run)
            if meta is None:
                raise HTTPException(404, f"run {run_id!r} has no stored projection")
            return views.projection_track(run, meta, probe)

    @app.get("/api/runs/{run_id}/projection/reference.png")
    def reference_png(run_id: str, point: int = Query(..., ge=0, description="a reference point of the map")
                      ) -> Response:
        with opened(run_id) as run:
            meta = views.projection_meta(run)
            thumbs = None if meta is None else views.reference_thumbnails(run, meta, [point])
            if not thumbs or not thumbs[0]:
                raise HTTPException(404, f"no reference image behind point {point} of the map of run {run_id!r}")
            return png_answer(thumbs[0])

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
        suffix = target.suffix.lower()
        if suffix in INLINE_FILE_TYPES:
            return FileResponse(target, media_type=INLINE_FILE_TYPES[suffix],
                                content_disposition_type="inline", filename=target.name)
        if suffix in ATTACHMENT_FILE_TYPES:
            return FileResponse(target, media_type="application/octet-stream", filename=target.name,
                                headers={"Content-Security-Policy": "sandbox; default-src 'none'"})
        raise HTTPException(404, f"no file {file_path!r} in run {run_id!r} (type {suffix or 'none'} is not served)")

    return app
