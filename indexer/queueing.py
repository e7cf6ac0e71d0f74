"""Where background work goes: a job queue that a shell provides, found by entry point.

The core records jobs in the catalog and runs them inline; handing one to
background workers is a shell's business. ``workers`` declares its queue in the
``lookalike.job_queue`` entry-point group (``celery = "workers.client"``), and
the command line finds it here, so ``lookalike ingest --background``, ``lookalike
index reindex --background`` and ``lookalike jobs retry`` work without the core
importing Celery. With no queue installed they fail with one line saying so.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from indexer import plugins

if TYPE_CHECKING:
    from indexer.catalog import Catalog, Job
    from indexer.config import Settings

GROUP = "lookalike.job_queue"


@runtime_checkable
class JobQueue(Protocol):
    """What the command line needs from a job queue: each call records, then queues."""

    def submit(
        self, catalog: Catalog, settings: Settings, source: str | Path, *, register: bool = True
    ) -> Job:
        """Record an ingest job for a folder, manifest or site and queue its first stage."""

    def retry(self, catalog: Catalog, settings: Settings, job_id: int) -> int:
        """Queue a job's failed fetches again (only those); how many chunks were queued."""

    def reindex(self, catalog: Catalog, settings: Settings) -> Job:
        """Record a re-index job and queue it for the single index writer."""


class NoJobQueue(RuntimeError):
    """No usable job queue is installed; the message says why in one line."""


def load_job_queue(points: Iterable[metadata.EntryPoint] | None = None) -> JobQueue:
    """The installed job queue (``points`` default to the ``lookalike.job_queue`` group)."""
    found = plugins.entry_points(GROUP) if points is None else list(points)
    if not found:
        raise NoJobQueue(f"no job queue is installed (the entry-point group {GROUP} is empty; "
                         "the workers package declares one)")
    if len(found) > 1:
        names = ", ".join(point.name for point in found)
        raise NoJobQueue(f"several job queues are installed ({names}); keep one")
    loaded, failed = plugins.load_all(found)
    if failed:
        raise NoJobQueue(f"could not load the job queue {failed[0]}")
    ((point, queue),) = loaded
    if not isinstance(queue, JobQueue):
        raise NoJobQueue(f"the job queue {point.name!r} ({point.value}) lacks submit, retry "
                         "or reindex")
    return queue
