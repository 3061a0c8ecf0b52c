"""python -m experiments.ple_gmm: see evolens.experiments.ple_gmm."""

import sys

from evolens.experiments.ple_gmm import main

if __name__ == "__main__":
    sys.exit(main())
