"""Jobs: take a source in by stages that any process may run, any number of times.

A job is a catalog row plus one *entry* per image its source offers (a URL to
download or a local file), numbered into chunks (see :mod:`indexer.catalog`).
Each stage reads what is left to do from the catalog and writes what it did
back to it, so each one is idempotent: running it twice, or twice at once,
leaves the same state (and one vector per item) as running it once.

1. :func:`submit_source` (:mod:`~indexer.jobs.submit`) reads a folder or manifest
   and writes the job and its entries, with what a re-crawl finds gone; a site's
   URL is crawled by :func:`prepare`, the first stage a worker runs.
2. :func:`fetch_chunk` (:mod:`~indexer.jobs.stages`) takes each pending entry of
   one chunk in through :mod:`indexer.intake` (the one intake path: read, hash,
   check, decode, thumbnail, store, item or failure).
3. :func:`embed_chunk` embeds the chunk's items the current model lacks.
4. :func:`index_job` is the single writer's stage: it adds embedded items to the
   index, applies removals once every entry is fetched, and finishes the job.

The Celery workers (``workers/``) run each stage as a task on its queue;
:func:`run_inline` (:mod:`~indexer.jobs.inline`) runs them all in this process,
for ``lookalike ingest`` and :meth:`indexer.engine.Lookalike.ingest`.
:func:`reindex` (:mod:`~indexer.jobs.reindex`) rebuilds the index into a new
version under the re-index lock. :func:`stalled_work` (:mod:`~indexer.jobs.sweep`)
is the sweeper, :func:`due_recrawls` the re-crawl schedule.
"""

from indexer.intake import Intake
from indexer.jobs.inline import run_inline
from indexer.jobs.progress import JobProgress, finalize, iter_jobs_progress, progress
from indexer.jobs.reindex import (
    LockFactory,
    ReindexOutcome,
    new_reindex_job,
    reindex,
    scheduled_reindex_job,
)
from indexer.jobs.stages import (
    ChunkReport,
    IndexOutcome,
    apply_deletions,
    apply_removals,
    embed_chunk,
    fetch_chunk,
    index_job,
)
from indexer.jobs.submit import (
    is_url,
    plan_crawl,
    prepare,
    retry_failed,
    start_job,
    submit_source,
)
from indexer.jobs.sweep import Work, due_recrawls, stalled_work

__all__ = [
    "ChunkReport",
    "IndexOutcome",
    "Intake",
    "JobProgress",
    "LockFactory",
    "ReindexOutcome",
    "Work",
    "apply_deletions",
    "apply_removals",
    "due_recrawls",
    "embed_chunk",
    "fetch_chunk",
    "finalize",
    "index_job",
    "is_url",
    "iter_jobs_progress",
    "new_reindex_job",
    "plan_crawl",
    "prepare",
    "progress",
    "reindex",
    "retry_failed",
    "run_inline",
    "scheduled_reindex_job",
    "start_job",
    "stalled_work",
    "submit_source",
]
