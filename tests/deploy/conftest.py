"""Whole deployments on this machine: every process of the Procfile, or ``lookalike demo``.

The worker tests' harness provides the tiny model, Redis prefixes and process
groups that are killed whatever happens (``procs``).
"""

from __future__ import annotations

import sys
from pathlib import Path

for _folder in (Path(__file__).resolve().parents[1] / "workers", Path(__file__).parent):
    if str(_folder) not in sys.path:
        sys.path.append(str(_folder))
from worker_harness import make_setup, procs, redis_prefix, redis_url, tiny_model  # noqa: E402, F401, I001
