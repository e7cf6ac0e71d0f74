"""The fuzz targets and their seeds import by plain name, as fuzz.py imports them."""

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.append(_HERE)
