"""``python -m indexer.cli``: the ``lookalike`` command without its console script."""

import sys

from indexer.cli import main

sys.exit(main())
