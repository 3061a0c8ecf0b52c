"""python -m experiments.ple_fairness: see evolens.experiments.ple_fairness."""

import sys

from evolens.experiments.ple_fairness import main

if __name__ == "__main__":
    sys.exit(main())
