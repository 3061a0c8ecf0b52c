"""python -m experiments.biased_generalization: see evolens.experiments.biased_generalization."""

import sys

from evolens.experiments.biased_generalization import main

if __name__ == "__main__":
    sys.exit(main())
