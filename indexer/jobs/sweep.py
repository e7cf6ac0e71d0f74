"""The sweeper and the re-crawl schedule: work to queue again, sources due again.

:func:`stalled_work` lists the work of jobs that have shown no progress for a
while, for a broker that lost their messages (a killed worker on the embedded
transport, a Redis restarted without persistence).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from indexer.catalog import Catalog, EntryState, ItemStatus, JobKind, JobStatus, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Work:
    """A stage to queue again: fetch or embed (with a chunk), start, index or reindex."""

    stage: str
    job_id: int
    chunk: int | None = None


def stalled_work(catalog: Catalog, stalled_after: float) -> list[Work]:
    """Work of unfinished jobs that should have happened ``stalled_after`` seconds ago.

    * a chunk whose items were stored that long ago but are still not embedded:
      its embedding (the message was lost; other chunks' progress does not hide it);
    * a job that showed no progress at all for that long: its unfetched chunks, its
      unembedded chunks and its index stage; a re-index job: the re-index.

    What is listed is touched, so it is not listed again before another quiet
    period. Queuing work again is always safe (every stage is idempotent); at
    worst a stage that was merely slow, or queued behind others, runs twice.
    """
    quiet = timedelta(seconds=stalled_after)
    work: list[Work] = []
    stalled = {job.id for job in catalog.stalled_jobs(quiet)}
    for job in catalog.jobs(limit=None, statuses=[JobStatus.QUEUED, JobStatus.RUNNING]):
        if job.kind == JobKind.REINDEX or not job.planned:
            if job.id in stalled:
                work.append(Work("reindex" if job.kind == JobKind.REINDEX else "start", job.id))
                catalog.touch_job(job.id)
            continue
        if job.id in stalled:
            fetch = catalog.job_chunks(job.id, [EntryState.PENDING])
            embed = catalog.job_chunks_with_items(job.id, [ItemStatus.STORED])
        else:
            fetch, embed = [], catalog.job_chunks_with_items(job.id, [ItemStatus.STORED], quiet)
        work.extend(Work("fetch", job.id, chunk) for chunk in fetch)
        work.extend(Work("embed", job.id, chunk) for chunk in embed)
        catalog.touch_chunks(job.id, embed)
        if job.id in stalled:
            work.append(Work("index", job.id))
            catalog.touch_job(job.id)
        if fetch or embed or job.id in stalled:
            idle = f" and its index stage (no progress for {stalled_after:g} s)"
            log.warning(
                "job %d: queuing again %d fetch and %d embed chunks%s",
                job.id, len(fetch), len(embed), idle if job.id in stalled else "",
            )  # fmt: skip
    return work


def due_recrawls(catalog: Catalog, interval: float) -> list[str]:
    """Registered sources whose last job finished at least ``interval`` seconds ago."""
    due = []
    horizon = utcnow() - timedelta(seconds=interval)
    for source in catalog.sources(recrawl_only=True):
        latest = catalog.jobs(source=source.location, limit=1)
        if not latest:
            due.append(source.location)
        elif latest[0].finished and latest[0].finished_at <= horizon:
            due.append(source.location)
    return due
