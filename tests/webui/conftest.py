"""The UI tests import helpers by plain name: ``site_harness`` beside this file, and the
worker tests' harness (real processes) from ``tests/workers``."""

import sys
from pathlib import Path

_here = Path(__file__).resolve().parent
for _folder in (str(_here), str(_here.parent / "workers")):
    if _folder not in sys.path:
        sys.path.append(_folder)
