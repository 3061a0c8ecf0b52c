"""The ``evolens`` command: a thin shell over the Python API.

    evolens runs DIR          table of the runs at or below DIR
    evolens show RUN          snapshots, scalars and events of one run
    evolens encoders          the encoders and whether their weights are present
    evolens embed RUN         embed a run's snapshots and references (cached)
    evolens analyze RUN       quality metrics per snapshot (overall and per class), stored in the run
    evolens experiment NAME   run a paper reproduction (biased-generalization, attribute-bias, ple-loops,
                              ple-gmm, ple-fairness)
    evolens report RUN        one self-contained HTML file (offline): metrics, alerts, projection, samples
    evolens compare RUN ...   the same report with several runs overlaid
    evolens serve DIR         live dashboard on http://127.0.0.1:8765 (read-only, updates while training)
    evolens demo [--out DIR]  train the demo model under monitoring, analyse it, write its report
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import sys
from pathlib import Path
from typing import Sequence

from .errors import EvolensError

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

    rows = []
    for info in list_encoders():
        where = info.weights if info.weights_available else "missing: " + info.weights
        rows.append([info.name, "yes" if info.weights_available else "no", info.description,
                     where if args.verbose or len(where) < 70 else where[:67] + "..."])
    print(_table(["encoder", "weights", "description", "weights from"], rows))
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    from .encoders import embed_run
    from .store import open_run

    kwargs = {"path": args.weights} if args.weights else {}
    with open_run(args.run) as run:
        result = embed_run(run, args.encoder, batch_size=args.batch_size, progress=not args.quiet, **kwargs)
    total = len(result.snapshots) + len(result.references)
    print(f"{result.encoder_id}: {total} arrays embedded ({result.computed} computed, {total - result.computed} cached)"
          + (f"; skipped non-finite snapshots {result.skipped}" if result.skipped else ""))
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from .analysis import analyze_run
    from .store import open_run

    kwargs = {"path": args.weights} if args.weights else {}
    with open_run(args.run) as run:
        result = analyze_run(run, args.encoder, reference=args.reference, by=None if args.overall else "label",
                             metrics=args.metrics.split(","), progress=not args.quiet, **kwargs)
    steps = sorted(result.values)
    if not steps:
        print("no snapshots analysed")
        return 0
    names = sorted({n for v in result.values.values() for n in v if "/class=" not in n})
    rows = []
    for name in names:
        s, v = result.series(name)
        rows.append([name, len(s), _fmt(v[0]), _fmt(v[-1]), _fmt(v.min()), int(s[v.argmin()])])
    print(f"{result.encoder_id} vs reference {result.reference!r}: {len(steps)} snapshots, "
          f"steps {steps[0]}..{steps[-1]}")
    print(_table(["metric", "points", "first", "last", "min", "at step"], rows))
    classes = sorted({n for v in result.values.values() for n in v if n.startswith("quality/fid/class=")})
    if classes:
        last = result.values[steps[-1]]
        print("per-class FID at the last snapshot: " + ", ".join(
            f"{n.split('=')[1]}: {last[n]:.2f}" for n in classes if n in last))
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    if args.name == "biased-generalization":
        from .experiments.biased_generalization import main as experiment_main
    elif args.name == "attribute-bias":
        from .experiments.attribute_bias import main as experiment_main
    elif args.name == "ple-loops":
        from .experiments.ple_loops import main as experiment_main
    elif args.name == "ple-gmm":
        from .experiments.ple_gmm import main as experiment_main
    else:
        from .experiments.ple_fairness import main as experiment_main
    return experiment_main(args.rest)


def cmd_report(args: argparse.Namespace) -> int:
    from .report.html import write_report

    path = write_report(args.runs, args.output, title=args.title)
    size = path.stat().st_size / 1e6
    print(f"report: {path} ({size:.1f} MB, opens offline)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .server import create_app

    app = create_app(args.dir)
    print(f"evolens dashboard of {Path(args.dir).resolve()} on http://{args.host}:{args.port} (read-only; Ctrl+C stops)")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print("warning: the dashboard has no authentication; anyone who reaches this address can read the runs",
              file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import train_demo

    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(args.out) / f"cvae-{stamp}"
    result = train_demo(run_dir, epochs=args.epochs, every=args.every, seed=args.seed, device=args.device,
                        progress=not args.quiet)
    print(f"\ntrained {result.steps} steps in {result.seconds:.1f} s: train loss {result.train_loss:.2f}, "
          f"held-out loss {result.heldout_loss:.2f} nats/image; {result.snapshots} snapshots")
    if not args.no_analysis:
        from .analysis import analyze_run

        print("\nanalysing every snapshot with digits-cnn features (trained once on first use, then cached) ...")
        quality = analyze_run(run_dir, "digits-cnn", progress=not args.quiet)
        steps, fids = quality.series("quality/fid")
        _, precision = quality.series("quality/precision")
        _, recall = quality.series("quality/recall")
        print(f"FID vs the training digits: {fids[0]:.1f} at step {steps[0]} -> {fids[-1]:.1f} at step {steps[-1]} "
              f"(best {fids.min():.1f} at step {steps[fids.argmin()]}); precision {precision[-1]:.2f}, "
              f"recall {recall[-1]:.2f}")
        last = quality.values[int(steps[-1])]
        per_class = {n.split("=")[1]: v for n, v in last.items() if n.startswith("quality/fid/class=")}
        if per_class:
            worst = max(per_class, key=per_class.get)
            print("per-class FID at the end: " + ", ".join(f"{c}: {v:.1f}" for c, v in sorted(per_class.items()))
                  + f"  (worst: digit {worst})")
        from .projection import project_run

        print("\nfitting the evolutionary map of all snapshots (digits-cnn features, reference digits in grey) ...")
        projection = project_run(run_dir, "digits-cnn", max_reference=1000, progress=not args.quiet)
        print("map quality: " + ", ".join(f"{k} {v:.3f}" for k, v in projection.scores.items()))
    from .report.html import write_report

    report = write_report(run_dir, run_dir / "report.html")
    print(f"sample grids: {run_dir / 'report'}")
    print(f"run directory: {run_dir}")
    print(f"report: {report}")
    print(f"next: open the report in a browser, or watch runs live with: evolens serve {Path(args.out)}")
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

    p = sub.add_parser("embed", help="embed every snapshot and reference set of a run (cached in the run)")
    p.add_argument("run")
    p.add_argument("--encoder", default="efficientnet-lite0")
    p.add_argument("--weights", default=None, help="weights file or directory for the encoder")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("analyze", help="quality metrics of every snapshot vs a reference set, stored in the run")
    p.add_argument("run")
    p.add_argument("--encoder", default="efficientnet-lite0")
    p.add_argument("--weights", default=None, help="weights file or directory for the encoder")
    p.add_argument("--reference", default="train")
    p.add_argument("--metrics", default="fid,kid,prdc,vendi,cmmd")
    p.add_argument("--overall", action="store_true", help="no per-class metrics")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("experiment", help="run a paper reproduction (e.g. biased-generalization)")
    p.add_argument("name", choices=["biased-generalization", "attribute-bias", "ple-loops", "ple-gmm", "ple-fairness"])
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

    p = sub.add_parser("serve", help="live dashboard of the runs at or below a directory (read-only)")
    p.add_argument("dir", nargs="?", default="runs")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: localhost only)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("demo", help="train a small conditional VAE on MNIST-5k under monitoring (CPU, minutes)")
    p.add_argument("--out", default="runs/demo", help="parent directory of the new run (default: runs/demo)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--every", type=int, default=25, help="snapshot every N steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-analysis", action="store_true", help="skip the quality analysis after training")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``evolens`` command; returns the exit status (2 on a user error)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except EvolensError as exc:
        print(f"evolens {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
