"""The directory in which a gunicorn server's workers share their metrics (prometheus_client).

prometheus_client decides at import whether values live in memory or in per-process
files under ``$PROMETHEUS_MULTIPROC_DIR``: the gunicorn master therefore empties the
directory and exports the variable (:func:`prepare`, its ``on_starting`` hook) before
it forks a worker, and never imports prometheus_client before that (this module
imports it only inside :func:`worker_exited`). Workers load the app after the fork,
so their metrics write to the directory and a scrape sums every worker's files.
"""

from __future__ import annotations

import os
from pathlib import Path

# prometheus_client's own switch; the master sets it from Settings.api_metrics_dir_for.
ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare(directory: Path) -> None:
    """Create ``directory``, delete a previous run's files (they would be summed in), export it."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):  # only prometheus_client's files, whatever the path
        stale.unlink(missing_ok=True)
    os.environ[ENV] = str(directory)


def worker_exited(directory: Path, pid: int) -> None:
    """Drop a dead worker's live gauges; its counters and histograms stay in the sums."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, str(directory))


def active_dir() -> Path | None:
    """The directory this process's metrics are written to, when a gunicorn master set one."""
    value = os.environ.get(ENV)
    return Path(value) if value else None
