"""``python -m evolens.experiments NAME [options]``: run one experiment of the registry."""

import sys

from . import EXPERIMENTS, run_experiment

if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
    print("usage: python -m evolens.experiments NAME [options]\n\nexperiments:")
    for name, (_, what) in EXPERIMENTS.items():
        print(f"  {name:<24}{what}")
    sys.exit(0 if len(sys.argv) >= 2 else 2)
sys.exit(run_experiment(sys.argv[1], sys.argv[2:]))
