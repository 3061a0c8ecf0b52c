"""python -m experiments.ple_loops: see evolens.experiments.ple_loops."""

import sys

from evolens.experiments.ple_loops import main

if __name__ == "__main__":
    sys.exit(main())
