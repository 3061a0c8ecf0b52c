"""``python -m evolens.analyses RUN_DIR --config-stdin``: the live analysis worker process that
``Monitor(analyze=Live(...))`` starts (its configuration arrives pickled on stdin)."""

import sys

from .live import _main

sys.exit(_main(sys.argv[1:]))
