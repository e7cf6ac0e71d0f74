"""The stages a job's chunks go through after it is submitted: fetch, embed, index.

Each reads what is left to do from the catalog and writes what it did back, so
running one twice, or twice at once, leaves the same state (and one vector per
item) as running it once.

* :func:`fetch_chunk` takes in (:mod:`indexer.intake`) each pending entry of one
  chunk and marks it done, or failed with the reason;
* :func:`embed_chunk` embeds the chunk's items that the current model has not
  embedded (vectors are committed before the catalog marks them);
* :func:`index_job` is the single writer's stage: it adds embedded items to the
  current index, removes what a re-crawl found gone once every entry is
  fetched, applies pending deletes, and marks the job done when nothing is left;
* :func:`apply_deletions` is the writer's half of every delete (the API's, the
  CLI's, a re-crawl's): deleted items leave the index, then the catalog.

Torch is imported only by the embedding and index stages (through the engine),
so a process that only fetches stays light.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from indexer.catalog import EntryKind, EntryState, ItemStatus, JobEntry, JobStatus, vector_id_for
from indexer.index.errors import IndexDiskFullError
from indexer.intake import Fatal, Intake, Taken, take_in_all
from indexer.jobs.progress import finalize, require_job

if TYPE_CHECKING:
    from indexer.engine import Lookalike

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChunkReport:
    done: int = 0  # entries stored (or found stored already)
    failed: int = 0
    skipped: int = 0  # already finished by an earlier (or concurrent) delivery
    added: int = 0  # of the done: new items


def fetch_chunk(
    intake: Intake,
    job_id: int,
    chunk: int,
    *,
    fatal: Fatal = (),
    threads: int = 1,
    on_entry: Callable[[JobEntry, Taken], None] | None = None,
) -> ChunkReport:
    """Take in every pending entry of one chunk.

    A failure is recorded on its entry (and, for bytes that are not a usable
    image, on a failed item) and the chunk goes on. Exceptions of the ``fatal``
    types (e.g. a task's soft time limit) are never swallowed. ``threads`` > 1
    prepares a few images at once (the in-process run); ``on_entry`` hears of
    each entry as it is finished (a progress bar).
    """
    catalog = intake.catalog
    job = require_job(catalog, job_id)
    catalog.set_job_status(job_id, JobStatus.RUNNING, only_from=(JobStatus.QUEUED,))
    done = failed = added = 0
    pending = catalog.job_entries(job_id, chunk=chunk, states=[EntryState.PENDING])
    for entry, taken in take_in_all(intake, pending, job.source, threads=threads, fatal=fatal):
        removal = None
        if entry.replaces is not None and (
            (taken.state == EntryState.DONE and taken.item_id != entry.replaces)
            or (taken.state == EntryState.FAILED and taken.permanent)
        ):  # the location now holds other bytes, or nothing: its old item may go
            removal = {"location": entry.location, "item_id": entry.replaces}
        catalog.finish_entry(
            entry.id, taken.state, item_id=taken.item_id, error=taken.error,
            permanent=taken.permanent, removal=removal,
        )  # fmt: skip
        if taken.state == EntryState.DONE:
            done += 1
            added += taken.created
        else:
            failed += 1
            log.info("job %d: %s failed: %s", job_id, entry.location, taken.error)
        if on_entry is not None:
            on_entry(entry, taken)
    return ChunkReport(done=done, failed=failed, skipped=0 if pending else 1, added=added)


def embed_chunk(engine: Lookalike, job_id: int, chunk: int | None) -> int:
    """Embed the chunk's (``None``: the whole job's) items the current model lacks."""
    version = engine.model.version
    todo = [
        item
        for item in engine.catalog.job_items(job_id, chunk)
        if item.status == ItemStatus.STORED
        or (
            item.status in (ItemStatus.EMBEDDED, ItemStatus.INDEXED)
            and item.model_version != version
        )
    ]
    if not todo:
        return 0
    report = engine.embed_items(todo)
    engine.catalog.touch_job(job_id)
    return report.embedded


INDEX_STAGE_FAILED = "index stage failed, to be run again"


@dataclass(frozen=True)
class IndexOutcome:
    version: str | None
    removed: int = 0
    finished: bool = False
    needs_reindex: bool = False  # the index holds another model's vectors


def index_job(engine: Lookalike, job_id: int) -> IndexOutcome:
    """Add embedded items to the index, apply removals, finish the job if all is done.

    Run by one writer at a time (the ``index`` queue has one consumer; the
    index store's writer lock holds anyway). When the current index belongs to
    another model nothing is added: only a re-index, which re-embeds, may
    replace it.

    On a full disk the job records why (:class:`IndexDiskFullError`, re-raised)
    and stays unfinished: its items stay embedded, their vectors in the store,
    and the next run of this stage (the sweeper's, once the job is stalled), any
    later index write or a re-index takes them in when there is space again.
    """
    catalog = engine.catalog
    job = require_job(catalog, job_id)
    indexes = engine.indexes
    current = indexes.current_version()
    if current is not None and indexes.manifest(current).model_version != engine.model.version:
        log.warning(
            "index %s holds another model's vectors; job %d waits for a re-index",
            current, job_id,
        )  # fmt: skip
        return IndexOutcome(current, needs_reindex=True)
    version = current
    if catalog.items_with_status(ItemStatus.EMBEDDED, limit=1):
        try:
            version = engine.update_index()
        except IndexDiskFullError as error:
            catalog.touch_job(job_id, message=f"{INDEX_STAGE_FAILED}: {error}")
            raise
    if job.message and job.message.startswith(INDEX_STAGE_FAILED):
        catalog.touch_job(job_id, message="")  # it went through this time
    removed = apply_removals(engine, job_id) + apply_deletions(engine)
    if indexes.current_version() != current:  # each update is a version: keep a few
        indexes.prune(engine.settings.index_keep_versions)
    finished = finalize(catalog, job_id)
    return IndexOutcome(indexes.current_version() or version, removed, finished)


def apply_removals(engine: Lookalike, job_id: int) -> int:
    """Remove the items a re-crawl found gone, once every entry of the job is fetched.

    Waiting for the fetches matters: an image that moved to a new URL is still
    in use, and that is only known once the new URL has been fetched.
    """
    catalog = engine.catalog
    job = require_job(catalog, job_id)
    if catalog.job_chunks(job_id, [EntryState.PENDING]):
        return 0
    pending = catalog.job_entries(job_id, states=[EntryState.PENDING], kinds=[EntryKind.REMOVE])
    if not pending:
        return 0
    doomed, kept = [], []
    for entry in pending:
        assert entry.item_id is not None
        if catalog.item_used_elsewhere(entry.item_id, job_id, job.source):
            kept.append(entry)
        else:
            doomed.append(entry)
    engine.mark_deleted(list(dict.fromkeys(e.item_id for e in doomed)))
    removed = apply_deletions(engine)
    catalog.set_entry_states([e.id for e in doomed], EntryState.REMOVED)
    catalog.set_entry_states([e.id for e in kept], EntryState.KEPT)
    log.info("job %d: removed %d items, kept %d still in use", job_id, removed, len(kept))
    return removed


def apply_deletions(engine: Lookalike) -> int:
    """The index writer's half of every delete: deleted items leave the index, then the catalog.

    Run by the single writer, like every other index change: the ``index`` queue's
    one worker (the API queues it; every index stage and re-index runs it too), or
    in process by :meth:`Lookalike.delete` and a re-crawl's removals. Their rows are purged only
    once their vectors are out of the current version; a re-index that read its
    vectors before a delete drops them under the same lock
    (:meth:`Lookalike.gone_since`). Returns how many items were purged.
    """
    catalog = engine.catalog
    deleted = catalog.deleted_items()
    if not deleted:
        return 0
    ids = np.array([vector_id_for(item.id) for item in deleted], dtype=np.int64)
    indexes = engine.indexes
    before = indexes.current_version()
    if before is not None:
        indexes.remove(ids)  # unknown ids are ignored; a new version only if one was there
    purged = catalog.purge_deleted([item.id for item in deleted])  # not one re-added since
    # An embed that raced the delete may have appended a vector after its tombstone.
    kept = catalog.get_many([item.id for item in deleted])
    gone = np.array([vector_id_for(i.id) for i in deleted if i.id not in kept], dtype=np.int64)
    revived = np.intersect1d(gone, engine.vectors.ids())
    if len(revived):
        engine.vectors.delete(revived)
    if indexes.current_version() != before:
        indexes.prune(engine.settings.index_keep_versions)
    log.info("deleted %d items from the index and the catalog", purged)
    return purged
