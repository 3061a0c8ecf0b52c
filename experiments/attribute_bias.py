"""python -m experiments.attribute_bias: see evolens.experiments.attribute_bias."""

import sys

from evolens.experiments.attribute_bias import main

if __name__ == "__main__":
    sys.exit(main())
