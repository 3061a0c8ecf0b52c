"""The ``evolens`` command: a thin shell over the Python API.

    evolens runs DIR          table of the runs at or below DIR
    evolens show RUN          snapshots, scalars and events of one run
    evolens encoders          the encoders and whether their weights are present
    evolens embed RUN         embed a run's snapshots and references (cached)
    evolens analyze RUN       quality metrics per snapshot (overall and per class), stored in the run
    evolens proximity RUN     memorisation metrics per snapshot (copy rate, NN distance train vs held-out)
    evolens watch RUN|DIR     analyse every new snapshot live (quality, proximity, the map, rules)
    evolens export tensorboard RUN --logdir DIR   scalars, sample grids, alerts and the projector
    evolens export wandb RUN --dir DIR            the same as a W&B offline run (wandb sync uploads it)
    evolens experiment NAME   run a paper reproduction (biased-generalization, attribute-bias, ple-loops,
                              ple-gmm, ple-fairness)
    evolens report RUN        one self-contained HTML file (offline): metrics, alerts, projection, samples
    evolens compare RUN ...   the same report with several runs overlaid
    evolens verify RUN        re-hash every array of a run and check its database (exit 1 when damaged)
    evolens gc RUN            remove unindexed arrays and dead writers' temporaries (safe while a run is live)
    evolens serve DIR         live dashboard on http://127.0.0.1:8765 (read-only, updates while training)
    evolens demo [--out DIR]  train the demo model under monitoring, analyse it, write its report
                              (every experiment, the demo included: python -m evolens.experiments NAME)
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from ._validation import non_negative_float, port_int, positive_float, positive_int
from .errors import EvolensError, InputError

__all__ = ["main"]


def _time(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if math.isfinite(ts) else "-"


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: float) -> str:
    return "nan" if value != value else f"{value:.6g}"


def cmd_runs(args: argparse.Namespace) -> int:
    from .store import find_runs, open_run

    rows = []
    for path in find_runs(args.dir):
        with open_run(path) as run:
            steps = run.steps()
            alerts = len(run.events(level="alert")) + len(run.events(level="warning"))
            rows.append([
                str(path), run.name, _time(run.created_at), len(steps),
                int(steps[-1]) if len(steps) else "-", len(run.scalar_names()), alerts,
            ])
    if not rows:
        print(f"no evolens runs at or below {args.dir}")
        return 0
    print(_table(["path", "name", "created", "snapshots", "last step", "scalars", "warnings"], rows))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from .store import open_run

    with open_run(args.run) as run:
        snaps = run.snapshots()
        print(f"run {run.name}  ({run.path})")
        print(f"created {_time(run.created_at)}; {len(snaps)} snapshots; "
              f"{len(run.sessions())} sessions; references: {', '.join(run.reference_names()) or '-'}")
        if snaps:
            shown = snaps if args.all or len(snaps) <= 12 else snaps[:5] + snaps[-5:]
            rows = [[s.step, _time(s.wall_time), s.n_samples, "x".join(map(str, s.sample_shape)),
                     f"{s.capture_seconds * 1000:.1f}", s.n_nonfinite or "", "yes" if s.checkpoint_path else ""]
                    for s in shown]
            print()
            print(_table(["step", "time", "samples", "shape", "capture ms", "non-finite", "checkpoint"], rows))
            if len(shown) < len(snaps):
                print(f"... {len(snaps) - len(shown)} more (use --all)")
        names = run.scalar_names()
        if names:
            rows = []
            for name in names:
                steps, values = run.scalars(name)
                finite = values[values == values]
                rows.append([name, len(steps), f"{steps[0]}..{steps[-1]}", _fmt(values[0]), _fmt(values[-1]),
                             _fmt(finite.min()) if finite.size else "nan"])
            print()
            print(_table(["scalar", "points", "steps", "first", "last", "min"], rows))
        events = run.events()
        if events:
            print()
            print(_table(["step", "level", "kind", "message"],
                         [[e.step if e.step is not None else "-", e.level, e.kind, e.message] for e in events[-20:]]))
    return 0


def cmd_encoders(args: argparse.Namespace) -> int:
    from .encoders import list_encoders

    from .encoders.costs import MEASURED_ON

    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.2g}"

    rows = []
    for info in list_encoders():
        where = info.weights if info.weights_available else "missing: " + info.weights
        rows.append([info.name, "yes" if info.weights_available else "no",
                     seconds(info.cpu_seconds_per_100), seconds(info.gpu_seconds_per_100), info.description,
                     where if args.verbose or len(where) < 70 else where[:67] + "..."])
    print(_table(["encoder", "weights", "CPU s/100 img", "GPU s/100 img", "description", "weights from"], rows))
    measured = "; ".join(MEASURED_ON.values()) if isinstance(MEASURED_ON, dict) else MEASURED_ON
    print(f"\nseconds to embed 100 images, measured by benchmarks/encoders.py on {measured}. "
          "On a CPU pick digits-cnn for digits, else pixels or efficientnet-lite0 with few probes.")
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    """``evolens embed``: a run (features cached in it), or a ``.npy`` file / folder of images (features written to
    ``--out`` as shards), locally or on Ray."""
    from .analyses import embedding
    from .store.run import is_run_dir

    kwargs = {"path": args.weights} if args.weights else {}
    target = Path(args.run)
    if is_run_dir(target):
        result = embedding(target, encoder=args.encoder, batch_size=args.batch_size, progress=not args.quiet,
                           engine=args.engine, address=args.address, workers=args.workers,
                           gpus_per_worker=args.gpus_per_worker, **kwargs)
        total = len(result.snapshots) + len(result.references)
        print(f"{result.encoder_id}: {total} arrays embedded ({result.computed} computed, "
              f"{total - result.computed} cached)"
              + (f"; skipped non-finite snapshots {result.skipped}" if result.skipped else ""))
        return 0
    from .analyses.ray_engine import NpySource, embed_into_shards, image_files
    from .encoders.registry import get_encoder
    from .store.shards import ShardWriter

    if target.suffix == ".npy" and target.is_file():
        source = NpySource(str(target.resolve()), int(np.load(target, mmap_mode="r").shape[0]))
    elif target.is_dir():
        source = image_files(target)
    else:
        raise InputError(f"run: expected a run directory, a .npy file of images or a folder of images, received "
                         f"{args.run!r}")
    if not args.out:
        raise InputError("--out: expected a folder for the feature shards (embedding a file or a folder of images)")
    encoder = get_encoder(args.encoder, **kwargs)
    with ShardWriter(args.out) as writer:
        embed_into_shards(encoder, source, writer, engine=args.engine, address=args.address, workers=args.workers,
                          batch_size=args.batch_size, progress=not args.quiet,
                          num_gpus_per_worker=args.gpus_per_worker)
    print(f"{encoder.id}: {source.n} images embedded into {args.out}")
    return 0


def cmd_reference(args: argparse.Namespace) -> int:
    """``evolens reference add|list|use``: named reference sets stored once and shared by runs."""
    from .store import references as R

    if args.action == "list":
        rows = [[r.name, str(r.n), ", ".join(r.encoders()) or "-", str(r.path)] for r in R.named_references(args.store)]
        print(_table(["reference", "images", "encoders with features", "path"], rows) if rows else
              f"no stored references in {R.reference_store(args.store)}")
        return 0
    if args.action == "use":
        name = R.use_named_reference(args.target, args.name, as_name=args.as_name, store=args.store)
        print(f"run {args.target} now has reference {name!r} (features and statistics from the store)")
        return 0
    from .analyses.ray_engine import image_files

    source = Path(args.target)
    if source.suffix == ".npy" and source.is_file():
        images = np.load(source, mmap_mode="r")
    elif source.is_dir():
        files = image_files(source)
        images = files.read(np.arange(files.n))
    else:
        raise InputError(f"path: expected a .npy file of images or a folder of images, received {args.target!r}")
    labels = np.load(args.labels) if args.labels else None
    kwargs = {"path": args.weights} if args.weights else {}
    from .analyses.references import add_named_reference

    reference = add_named_reference(args.name, np.asarray(images), labels, encoder=args.encoder, store=args.store,
                                    batch_size=args.batch_size, engine=args.engine, address=args.address,
                                    workers=args.workers, gpus_per_worker=args.gpus_per_worker,
                                    progress=not args.quiet, radii=args.radii, **kwargs)
    print(f"reference {reference.name!r}: {reference.n} images, features for {', '.join(reference.encoders())} "
          f"in {reference.path}")
    return 0


def _again_every(seconds: float | None, once) -> int:
    """Call ``once()`` (which prints what it did), then again every ``seconds`` until Ctrl+C; once without."""
    import time as _time

    while True:
        once()
        if not seconds:
            return 0
        _time.sleep(seconds)


def cmd_publish(args: argparse.Namespace) -> int:
    """``evolens publish RUN DEST [--every S]``: a read-only copy of a run for other machines (again every S s)."""
    from .store.publish import publish

    def once() -> None:
        done = publish(args.run, args.dest)
        print(f"published {args.run} to {args.dest}: {done['arrays_copied']} of {done['arrays_total']} array files "
              f"copied ({done['bytes'] / 2**20:.1f} MiB)", flush=True)

    return _again_every(args.every, once)


def cmd_mirror(args: argparse.Namespace) -> int:
    """``evolens mirror SOURCE DEST [--every S]``: a writable copy of a run on this host, kept up to date."""
    from .store.publish import mirror

    def once() -> None:
        done = mirror(args.source, args.dest)
        print(f"mirrored {args.source} to {args.dest}: {done['snapshots_copied']} snapshots, "
              f"{done['references_copied']} reference sets copied", flush=True)

    return _again_every(args.every, once)


def cmd_analysis(args: argparse.Namespace) -> int:
    """``evolens analyze`` (quality) and ``evolens proximity``: run the analysis, print its series."""
    from . import analyses

    kwargs = {"path": args.weights} if args.weights else {}
    if args.command == "analyze":
        kwargs.update(by=None if args.overall else "label", metrics=args.metrics.split(","))
    else:
        kwargs.update(heldout=args.heldout)
    analysis = analyses.quality if args.command == "analyze" else analyses.proximity
    _print_result(analysis(args.run, encoder=args.encoder, reference=args.reference, progress=not args.quiet,
                           **kwargs))
    return 0


def _print_result(result) -> None:
    from .names import parse_name

    steps = sorted(result.values)
    if not steps:
        print("no snapshots analysed")
        return
    rows = []
    for name in result.names():
        if parse_name(name).cls is not None:
            continue
        s, v = result.series(name)
        rows.append([parse_name(name).base, len(s), _fmt(v[0]), _fmt(v[-1]), _fmt(np.nanmin(v)),
                     int(s[np.nanargmin(v)]) if np.isfinite(v).any() else "-"])
    print(f"{result.analysis} with {result.encoder_id} vs reference {result.reference!r}: {len(steps)} snapshots "
          f"(steps {steps[0]}..{steps[-1]}; {len(result.computed)} computed now, the rest read back)")
    print(_table(["metric", "points", "first", "last", "min", "at step"], rows))
    for key, reason in result.skipped.items():
        if not key.startswith("step="):
            print(f"skipped {key}: {reason}")


def cmd_watch(args: argparse.Namespace) -> int:
    import json

    from .analyses.live import Live, watch
    from .detect import rule_from_dict
    from .errors import InputError

    rules = []
    if args.rules:
        try:
            specs = json.loads(Path(args.rules).read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"--rules: expected a JSON file with a list of rules, received {args.rules!r} ({exc})")
        if not isinstance(specs, list):
            raise InputError(f"--rules: expected a JSON list of rules, received {type(specs).__name__}")
        rules = [rule_from_dict(spec) for spec in specs]
    live = Live(encoder=args.encoder, reference=args.reference, analyses=tuple(args.analyses.split(",")),
                heldout=args.heldout, classifier=args.classifier, rules=rules, device=args.device,
                results=args.results, stale_after=args.stale_after)
    counts = watch(args.path, live, follow=args.follow, progress=not args.quiet)
    print(f"analysed {sum(counts.values())} snapshots in {len(counts)} run(s)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    if args.format == "wandb":
        from .integrations.wandb import export_wandb

        if args.dir is None:
            raise InputError("--dir: expected the directory to write the W&B offline run into")
        path = export_wandb(args.run, args.dir, project=args.project)
        print(f"wandb: {path} (offline; upload with: wandb sync {path})")
        return 0
    from .integrations.tensorboard import export_tensorboard

    if args.logdir is None:
        raise InputError("--logdir: expected the TensorBoard log directory to write")
    logdir = export_tensorboard(args.run, args.logdir)
    print(f"tensorboard: {logdir} (tensorboard --logdir {logdir})")
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    from .experiments import run_experiment

    return run_experiment(args.name, args.rest)


def cmd_report(args: argparse.Namespace) -> int:
    from .views.report import write_report

    if args.output is not None and Path(args.output).is_dir():
        raise InputError(f"--output: expected an HTML file to write, received the directory {args.output!r} "
                         "(name a file in it, e.g. report.html)")
    path = write_report(args.runs, args.output, title=args.title)
    size = path.stat().st_size / 1e6
    print(f"report: {path} ({size:.1f} MB, opens offline)")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from .store.maintenance import verify_run

    report = verify_run(args.run, progress=not args.quiet)
    print(f"{report.run}: {report.arrays} arrays checked, {len(report.damaged)} damaged; database: {report.database}")
    for rel, problem in report.damaged:
        print(f"  damaged {rel}: {problem}")
    for path in report.missing_checkpoints:
        print(f"  missing checkpoint {path}")
    if not report.ok:
        print("a damaged array is repaired by writing the same content again (e.g. re-running the capture or the "
              "analysis that stored it)", file=sys.stderr)
    return 0 if report.ok else 1


def cmd_gc(args: argparse.Namespace) -> int:
    from .store.maintenance import collect_garbage

    report = collect_garbage(args.run, grace_seconds=args.grace, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {len(report.orphans)} unindexed array files ({report.bytes / 1e6:.1f} MB) and "
          f"{report.temporaries} temporaries")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .views.server import LOOPBACK_HOSTS, WILDCARD_HOSTS, create_app

    if not 0 <= args.port <= 65535:
        raise InputError(f"--port: expected a TCP port in 0..65535, received {args.port}")
    allowed = [args.host, *args.allow_host]
    if args.host in WILDCARD_HOSTS:  # bound to every interface: the machine's own names reach it too
        import socket

        allowed += [socket.gethostname(), socket.getfqdn()]
        try:
            allowed += sorted({info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)})
        except OSError:  # a host name that does not resolve: its addresses need --allow-host
            pass
    app = create_app(args.dir, allowed_hosts=[h for h in allowed if h])
    print(f"evolens dashboard of {Path(args.dir).resolve()} on http://{args.host}:{args.port} (read-only; Ctrl+C stops)")
    if args.host not in LOOPBACK_HOSTS:
        print("warning: the dashboard has no authentication; anyone who reaches this address can read the runs",
              file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``evolens`` command."""
    parser = argparse.ArgumentParser(prog="evolens", description="Watch a generative model while it trains.")
    parser.add_argument("--version", action="version", version=f"evolens {__import__('evolens').__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("runs", help="list the runs at or below a directory")
    p.add_argument("dir", nargs="?", default="runs")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("show", help="snapshots, scalars and events of one run")
    p.add_argument("run")
    p.add_argument("--all", action="store_true", help="list every snapshot")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("encoders", help="list the encoders and whether their weights are present")
    p.add_argument("-v", "--verbose", action="store_true", help="show where weights were looked for in full")
    p.set_defaults(func=cmd_encoders)

    def analysis_parser(name: str, help: str, encoder: str, func) -> argparse.ArgumentParser:
        """A subcommand over one run with an encoder (embed, analyze, proximity)."""
        p = sub.add_parser(name, help=help)
        p.add_argument("run")
        p.add_argument("--encoder", default=encoder)
        p.add_argument("--weights", default=None, help="weights file or directory for the encoder")
        p.add_argument("--quiet", action="store_true")
        p.set_defaults(func=func)
        return p

    p = analysis_parser("embed", "embed every snapshot and reference set of a run (cached in the run), or a .npy "
                        "file / folder of images into feature shards (--out)", "efficientnet-lite0", cmd_embed)
    p.add_argument("--batch-size", type=positive_int, default=None)
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="ray: Ray Data with the encoder as actors (pip install evolens[ray])")
    p.add_argument("--address", default=None, help="Ray cluster address ('auto', 'ray://host:10001'); default: a "
                   "local Ray")
    p.add_argument("--workers", type=positive_int, default=None, help="encoder actors (default: one per CPU, or "
                   "one per GPU with --gpus-per-worker)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="ray: GPUs each encoder actor takes (1 on a "
                   "GPU cluster: one actor per GPU); 0: CPU slots")
    p.add_argument("--out", default=None, help="folder for the feature shards (a .npy file or folder of images)")

    p = sub.add_parser("publish", help="copy a run read-only for other machines (a network filesystem, a cluster)")
    p.add_argument("run")
    p.add_argument("dest")
    p.add_argument("--every", type=positive_float, default=None, help="publish again every S seconds (Ctrl+C ends)")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("mirror", help="a writable copy of a run (or of a published copy) on this host, for a live "
                       "worker here (evolens watch DEST --results URL)")
    p.add_argument("source")
    p.add_argument("dest")
    p.add_argument("--every", type=positive_float, default=None, help="mirror again every S seconds (Ctrl+C ends)")
    p.set_defaults(func=cmd_mirror)

    p = sub.add_parser("reference", help="named reference sets stored once, shared by every run that uses them")
    actions = p.add_subparsers(dest="action", required=True)
    q = actions.add_parser("add", help="store NAME from a .npy file or a folder of images, with its features")
    q.add_argument("name")
    q.add_argument("target", metavar="path")
    q.add_argument("--labels", default=None, help=".npy file of labels (n,)")
    q.add_argument("--encoder", default="efficientnet-lite0")
    q.add_argument("--weights", default=None, help="weights file or directory for the encoder")
    q.add_argument("--batch-size", type=positive_int, default=None)
    q.add_argument("--engine", choices=("local", "ray"), default="local")
    q.add_argument("--address", default=None)
    q.add_argument("--workers", type=positive_int, default=None)
    q.add_argument("--gpus-per-worker", type=float, default=0.0, help="ray: GPUs each encoder actor takes")
    q.add_argument("--no-radii", dest="radii", action="store_false",
                   help="skip the k-NN radii of precision/recall and density/coverage (a search quadratic in the "
                        "number of images; a run's quality analysis computes and stores them on first use)")
    q.add_argument("--quiet", action="store_true")
    q = actions.add_parser("list", help="the stored references and their encoders")
    q = actions.add_parser("use", help="give a run a stored reference (its features are not embedded again)")
    q.add_argument("target", metavar="run")
    q.add_argument("name")
    q.add_argument("--as", dest="as_name", default=None, help="name of the reference in the run (default: NAME)")
    for q in actions.choices.values():
        q.add_argument("--store", default=None, help="reference store folder (default: $EVOLENS_REFERENCES, else "
                       "<evolens cache>/references)")
    p.set_defaults(func=cmd_reference)

    p = analysis_parser("analyze", "quality metrics of every snapshot vs a reference set, stored in the run",
                        "efficientnet-lite0", cmd_analysis)
    p.add_argument("--reference", default="train")
    p.add_argument("--metrics", default="fid,kid,prdc,vendi,cmmd")
    p.add_argument("--overall", action="store_true", help="no per-class metrics")

    p = analysis_parser("proximity", "memorisation metrics of every snapshot vs the training data, stored",
                        "pixels", cmd_analysis)
    p.add_argument("--reference", default="train")
    p.add_argument("--heldout", default="heldout", help="held-out reference set (skipped when absent)")

    p = sub.add_parser("watch", help="analyse every new snapshot of a run (or of every run below a folder) live")
    p.add_argument("path", help="a run directory, or a folder of runs (runs that appear later are followed too)")
    p.add_argument("--encoder", default="efficientnet-lite0")
    p.add_argument("--reference", default="train")
    p.add_argument("--heldout", default="heldout", help="held-out reference set for proximity (skipped if absent)")
    p.add_argument("--analyses", default="quality,proximity,map",
                   help="comma-separated subset of quality,proximity,attributes,map")
    p.add_argument("--classifier", default=None, help="encoder with classify() for the attributes analysis")
    p.add_argument("--rules", default=None, help='JSON file: [{"rule": "threshold", "metric": "quality/fid", '
                   '"above": 80, "pause": true}, ...]')
    p.add_argument("--device", default=None)
    p.add_argument("--follow", action="store_true", help="keep following after the captures end")
    p.add_argument("--results", default=None, help="postgresql:// URL shared with workers on other hosts: each "
                   "snapshot is analysed once, every copy gets every value (pip install evolens[postgres])")
    p.add_argument("--stale-after", type=positive_float, default=600.0,
                   help="seconds after which another worker's unfinished claim is taken over")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser("export", help="export a run to another tool (tensorboard, wandb)")
    p.add_argument("format", choices=["tensorboard", "wandb"])
    p.add_argument("run")
    p.add_argument("--logdir", default=None, help="tensorboard: the log directory to write")
    p.add_argument("--dir", default=None, help="wandb: the directory to write the offline run into")
    p.add_argument("--project", default="evolens", help="wandb: the project name")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("experiment", help="run a paper reproduction (e.g. biased-generalization)")
    p.add_argument("name", choices=list(__import__("evolens.experiments", fromlist=["EXPERIMENTS"]).EXPERIMENTS))
    p.add_argument("rest", nargs=argparse.REMAINDER, help="options of the experiment (--help for them)")
    p.set_defaults(func=cmd_experiment)

    p = sub.add_parser("report", help="write one self-contained HTML report of a run (opens offline)")
    p.add_argument("runs", nargs=1, metavar="RUN")
    p.add_argument("-o", "--output", default=None, help="HTML file to write (default: RUN/report.html)")
    p.add_argument("--title", default=None)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("compare", help="one HTML report with several runs overlaid")
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.add_argument("-o", "--output", default="comparison.html", help="HTML file to write (default: comparison.html)")
    p.add_argument("--title", default=None)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("verify", help="re-hash every array of a run and check its database (exit 1 when damaged)")
    p.add_argument("run")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("gc", help="remove unindexed arrays and dead writers' temporaries (safe while a run is live)")
    p.add_argument("run")
    p.add_argument("--grace", type=non_negative_float, default=900.0,
                   help="keep unindexed arrays younger than this many seconds (a live writer's)")
    p.add_argument("--dry-run", action="store_true", help="list, do not remove")
    p.set_defaults(func=cmd_gc)

    p = sub.add_parser("serve", help="live dashboard of the runs at or below a directory (read-only)")
    p.add_argument("dir", nargs="?", default="runs")
    p.add_argument("--port", type=port_int, default=8765)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: localhost only)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="a host name the browser may use to reach the dashboard, besides loopback names and --host "
                        "(repeatable; the Host header of every request is checked)")
    p.set_defaults(func=cmd_serve)

    # `evolens demo ...` is `evolens experiment demo ...` (see main); listed here for --help
    sub.add_parser("demo", help="train a small conditional VAE on MNIST-5k under monitoring (CPU, minutes)",
                   add_help=False)
    return parser


def _check_encoder_option(args: argparse.Namespace) -> None:
    """``--encoder NAME`` of any command names a registered encoder (an error naming --encoder, not the API's
    ``name`` argument, before anything runs)."""
    name = getattr(args, "encoder", None)
    if not isinstance(name, str):
        return
    from .encoders.registry import registered_names

    if name not in registered_names():
        raise InputError(f"--encoder: no encoder named {name!r}; registered: {registered_names()} "
                         "(`evolens encoders` lists them with their cost)")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``evolens`` command; returns the exit status (2 on a user error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["demo"]:  # every option belongs to the demo's own parser (argparse splits REMAINDER oddly)
        argv = ["experiment", "demo", *argv[1:]]
    args = build_parser().parse_args(argv)
    try:
        _check_encoder_option(args)
        return int(args.func(args) or 0)
    except EvolensError as exc:
        print(f"evolens {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
