"""The soak (``soak.py`` beside this file) imports its helpers by plain name."""

import sys
from pathlib import Path

_here = str(Path(__file__).resolve().parent)
if _here not in sys.path:
    sys.path.append(_here)
