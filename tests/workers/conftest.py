"""Fixtures of the worker tests; the harness itself is ``worker_harness.py`` beside this file."""

import sys
from pathlib import Path

_here = Path(__file__).resolve().parent
_tests = str(_here.parent)
if "workers" not in sys.modules:  # tests/workers must not shadow the real package
    _saved = sys.path[:]
    sys.path[:] = [p for p in sys.path if str(Path(p or ".").resolve()) != _tests]
    import workers  # noqa: F401

    sys.path[:] = _saved
if str(_here) not in sys.path:
    sys.path.append(str(_here))

from worker_harness import (  # noqa: E402, F401
    make_setup,
    procs,
    redis_prefix,
    redis_url,
    shop,
    tiny_model,
)
