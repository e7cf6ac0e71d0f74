"""Re-indexing: rebuild the index from the vector store into a new version.

Re-embeds first when the model changed, under the re-index lock; a beat tick
asks for a re-index through :func:`scheduled_reindex_job`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from indexer.catalog import Catalog, Job, JobKind, JobStatus, utcnow
from indexer.index.errors import ReindexRunning
from indexer.jobs.progress import require_job
from indexer.jobs.stages import apply_deletions

if TYPE_CHECKING:
    from indexer.engine import Lookalike

log = logging.getLogger(__name__)

LockFactory = Callable[[], AbstractContextManager[Any]]


@dataclass(frozen=True)
class ReindexOutcome:
    status: str  # done, skipped (another re-index runs) or failed
    version: str | None = None
    message: str = ""
    reembedded: int = 0


def new_reindex_job(catalog: Catalog, message: str | None = None) -> Job:
    return catalog.create_job(JobKind.REINDEX, message=message)


def scheduled_reindex_job(catalog: Catalog, interval: float) -> Job | None:
    """A re-index job for a beat tick, or None when another one makes it redundant.

    Two beat processes (or a beat restarted with a fresh schedule file) send the
    same tick twice; a re-index that is queued or running, or that finished less
    than half an interval ago, already does that tick's work.
    """
    horizon = utcnow() - timedelta(seconds=interval / 2)
    for job in catalog.jobs(limit=20, kind=JobKind.REINDEX):
        if not job.finished and job.status != JobStatus.SKIPPED:
            return None
        if job.status == JobStatus.DONE and job.finished_at and job.finished_at > horizon:
            return None
    return new_reindex_job(catalog)


def reindex(
    engine: Lookalike,
    job_id: int,
    *,
    keep: int | None = None,
    lock: LockFactory | None = None,
    progress_bar: bool = False,
) -> ReindexOutcome:
    """Rebuild the index from the vector store into a new version and switch to it.

    Items the current model has not embedded (all of them after a model change)
    are embedded first, in committed chunks, so an interrupted re-index resumes.
    The new version is complete on disk before ``CURRENT`` moves to it; a crash in
    between leaves the old version live and the next run writes another. The
    previous versions stay for ``lookalike index rollback``; older ones are pruned
    (``keep`` versions remain, default ``settings.index_keep_versions``).

    Only one re-index runs at a time: the index store's re-index lock (this
    machine) and ``lock`` (e.g. a Redis lock for several machines) are taken
    first; when either is held elsewhere the job is marked skipped.
    """
    catalog = engine.catalog
    job = require_job(catalog, job_id)
    if job.kind != JobKind.REINDEX:
        raise ValueError(f"job {job_id} is not a re-index")
    if job.status == JobStatus.DONE:
        return ReindexOutcome(JobStatus.DONE, message=job.message or "already done")
    keep = keep or engine.settings.index_keep_versions
    try:
        with ExitStack() as held:
            held.enter_context(lock() if lock is not None else nullcontext())
            held.enter_context(engine.indexes.reindex_lock())
            return _reindex_locked(engine, job_id, keep, progress_bar)
    except ReindexRunning as running:
        message = str(running)
        # A redelivered copy of a re-index that is running elsewhere leaves its job alone.
        catalog.set_job_status(
            job_id, JobStatus.SKIPPED, message=message, only_from=(JobStatus.QUEUED,)
        )
        log.warning("re-index job %d skipped: %s", job_id, message)
        return ReindexOutcome(JobStatus.SKIPPED, message=message)
    except Exception as error:
        catalog.set_job_status(job_id, JobStatus.FAILED, message=f"{type(error).__name__}: {error}")
        raise


def _reindex_locked(
    engine: Lookalike, job_id: int, keep: int, progress_bar: bool
) -> ReindexOutcome:
    catalog = engine.catalog
    catalog.set_job_status(job_id, JobStatus.RUNNING, message="embedding what the model lacks")
    model_version = engine.model.version
    reembedded = 0
    tried: set[str] = set()
    while True:  # pages, so that progress shows and a crash loses one page at most
        page = [
            item
            for item in catalog.items_needing_embedding(model_version, limit=4096)
            if item.id not in tried  # never loop on an item whose state did not move
        ]
        if not page:
            break
        tried.update(item.id for item in page)
        reembedded += engine.embed_items(page, progress=progress_bar).embedded
        catalog.touch_job(job_id, message=f"embedded {reembedded} items with {model_version}")
    ids, vectors = engine.vectors.load()
    if len(ids) == 0:
        message = "nothing to index yet: no item has a vector"
        catalog.set_job_status(job_id, JobStatus.DONE, message=message)
        return ReindexOutcome(JobStatus.DONE, message=message, reembedded=reembedded)
    catalog.touch_job(job_id, message=f"building a new index of {len(ids)} vectors")
    settings = engine.settings
    built = engine.indexes.build(
        ids,
        vectors,
        model_version=model_version,
        n_shards=settings.shards,
        factory=settings.index_factory,
        flat_threshold=settings.flat_threshold,
        pq_threshold=settings.pq_threshold,
        index_dim=settings.index_dim,
        activate=False,
    )
    # Verifies every shard, then switches CURRENT; items deleted since the read stay out.
    try:
        version = engine.indexes.activate_without(built, engine.gone_since(ids))
    except BaseException:
        # Not current, so it serves nobody; on a full disk it holds the space a re-run needs.
        try:
            engine.indexes.discard(built)
        except Exception:  # the original error is the one to record; prune retries this
            log.exception("could not discard index version %s", built)
        raise
    catalog.mark_indexed(engine._item_ids_for(ids))
    apply_deletions(engine)  # their vectors are out of this version: purge their rows
    pruned = engine.indexes.prune(keep)
    message = (
        f"index version {version} is current: {len(ids)} vectors of {model_version}"
        + (f", {reembedded} embedded first" if reembedded else "")
        + (f"; pruned {len(pruned)} old versions" if pruned else "")
    )
    catalog.set_job_status(job_id, JobStatus.DONE, message=message)
    log.info("re-index job %d: %s", job_id, message)
    return ReindexOutcome(JobStatus.DONE, version, message, reembedded)
