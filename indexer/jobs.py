"""Jobs: take a source in by stages that any process may run, any number of times.

A job is a catalog row plus one *entry* per image its source offers (a URL to
download or a local file), numbered into chunks (see :mod:`indexer.catalog`).
The stages below each read what is left to do from the catalog and write what
they did back to it, so each one is idempotent: running it twice, or twice at
once, leaves the same state (and one vector per item) as running it once.

1. :func:`submit_source` reads a folder or manifest and writes the job and its
   entries. When the source was taken in before, the entries remember which item
   each location held (``replaces``) and locations the source no longer lists
   become *removal* entries: that is how a re-crawl finds new, changed and
   removed images. A source given as an http(s) URL is a site to crawl: its job
   is written without entries, and :func:`prepare` (the first stage a worker
   runs) crawls it (:mod:`indexer.sources.crawl`) and adds them; an image is only
   removed when the crawl is sure it is gone (:func:`~indexer.sources.crawl.diff_crawls`),
   never because a page timed out.
2. :func:`fetch_chunk` downloads (:class:`~indexer.sources.fetch.Fetcher`) or
   reads each pending entry of one chunk, stores the bytes content-addressed,
   adds the item and marks the entry done, or failed with the reason.
3. :func:`embed_chunk` embeds the chunk's items that the current model has not
   embedded (vectors are committed before the catalog marks them).
4. :func:`index_job` is the single writer's stage: it adds embedded items to the
   current index, removes what a re-crawl found gone once every entry is
   fetched, and marks the job done when nothing is left.

The Celery workers (``workers/``) run each stage as a task on its queue;
:func:`run_inline` runs them all in this process. :func:`reindex` rebuilds the
index from the vector store into a new version (re-embedding first when the
model changed) under the re-index lock. :func:`stalled_work` is the sweeper:
it lists the work of jobs that have shown no progress for a while, for a
broker that lost their messages (a killed worker on the embedded transport, a
Redis restarted without persistence).

Torch is imported only by the embedding and index stages (through the engine),
so a process that only fetches stays light.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from indexer.blobs import BlobStore
from indexer.catalog import (
    Catalog,
    EntryKind,
    EntryState,
    ItemStatus,
    Job,
    JobEntry,
    JobKind,
    JobStatus,
    utcnow,
)
from indexer.config import Settings
from indexer.images import THUMBNAIL_EXT, ImageRejected, content_id, load_image, make_thumbnail
from indexer.index.errors import ReindexRunning
from indexer.ingest import FileTooLarge, read_limited, records_for
from indexer.sources.crawl import ImageState, crawl, diff_crawls
from indexer.sources.fetch import Fetcher, FetchError
from indexer.sources.records import SourceRecord

if TYPE_CHECKING:
    from indexer.engine import Lookalike

log = logging.getLogger(__name__)

LockFactory = Callable[[], AbstractContextManager[Any]]


# -- progress -------------------------------------------------------------------


@dataclass(frozen=True)
class JobProgress:
    """What a job has done so far, counted from its entries and their items."""

    job: Job
    fetches: dict[str, int]  # entries by state: pending, done, failed
    removals: dict[str, int]  # removal entries: pending, removed, kept
    items: dict[str, int]  # the items the done entries became, by status
    failures: list[tuple[str, str]] = field(default_factory=list)  # (location, reason)

    @property
    def complete(self) -> bool:
        """Every entry fetched or failed, every item indexed or failed, every removal done."""
        return (
            self.fetches[EntryState.PENDING] == 0
            and self.removals[EntryState.PENDING] == 0
            and self.items[ItemStatus.STORED] == 0
            and self.items[ItemStatus.EMBEDDED] == 0
        )

    @property
    def failed(self) -> int:
        return self.fetches[EntryState.FAILED] + self.items[ItemStatus.FAILED]

    def summary(self) -> str:
        if self.job.kind == JobKind.REINDEX:
            return self.job.message or ""
        if not self.job.planned:
            return f"crawling {self.job.source}"
        f, i = self.fetches, self.items
        parts = [
            f"{f[EntryState.DONE] + f[EntryState.FAILED]}/{self.job.total} fetched",
            f"{i[ItemStatus.INDEXED]} indexed",
        ]
        if i[ItemStatus.STORED] or i[ItemStatus.EMBEDDED]:
            parts.append(f"{i[ItemStatus.STORED] + i[ItemStatus.EMBEDDED]} to embed or index")
        parts.append(f"{self.failed} failed")
        if self.removals[EntryState.REMOVED] or self.removals[EntryState.PENDING]:
            parts.append(f"{self.removals[EntryState.REMOVED]} removed")
        return ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        job = asdict(self.job)
        for key in ("created_at", "updated_at", "started_at", "finished_at"):
            job[key] = job[key].isoformat() if job[key] is not None else None
        return {
            **job,
            "fetches": dict(self.fetches),
            "removals": dict(self.removals),
            "items": dict(self.items),
            "failed": self.failed,
            "failures": [{"location": loc, "reason": why} for loc, why in self.failures],
        }


def progress(catalog: Catalog, job_id: int, *, failures: int | None = 100) -> JobProgress:
    job = _require_job(catalog, job_id)
    fetches, removals, items = catalog.job_counts(job_id)
    listed = catalog.job_failures(job_id, limit=failures) if failures != 0 else []
    return JobProgress(job, fetches, removals, items, listed)


def finalize(catalog: Catalog, job_id: int) -> bool:
    """Mark the job done if nothing is left to do; True if it is (now or already) done."""
    state = progress(catalog, job_id, failures=0)
    if state.job.status == JobStatus.DONE:
        return True
    if state.job.kind == JobKind.REINDEX or not state.job.planned or not state.complete:
        return False
    return catalog.set_job_status(
        job_id, JobStatus.DONE, only_from=(JobStatus.QUEUED, JobStatus.RUNNING)
    )


# -- 1. submit ------------------------------------------------------------------


def submit_source(
    catalog: Catalog,
    settings: Settings,
    source: str | Path,
    *,
    kind: str = JobKind.INGEST,
    register: bool = True,
) -> Job:
    """Read a folder or manifest and write a job for it (nothing is fetched yet).

    Raises ``ValueError`` (a :class:`~indexer.sources.ManifestError` included) for
    a source that cannot be read; the caller reports it. ``register`` remembers
    the source for scheduled re-crawls. An http(s) URL is a site to crawl: the
    job gets its entries from :func:`prepare`.
    """
    if is_url(source):
        job = catalog.create_job(
            kind, source=str(source), chunk_size=settings.ingest_chunk_size, planned=False
        )
        if register:
            catalog.register_source(str(source))
        log.info("job %d: %s, crawl of %s to come", job.id, kind, source)
        return job
    path = Path(source).expanduser().resolve()
    location = str(path)
    records = records_for(path)
    baseline = _baseline(catalog.source_history(location))
    entries = _entries(catalog, location, records, baseline)
    seen = {entry["location"] for entry in entries}
    removals = [
        {"location": where, "item_id": item_id}
        for where, item_id in baseline.items()
        if where not in seen
    ]
    job = catalog.create_job(
        kind,
        source=location,
        entries=entries,
        removals=removals,
        chunk_size=settings.ingest_chunk_size,
    )
    if register:
        catalog.register_source(location)
    log.info(
        "job %d: %s %s, %d images in %d chunks, %d gone since the last run",
        job.id, kind, location, job.total, job.chunks, len(removals),
    )  # fmt: skip
    return job


def is_url(source: str | Path) -> bool:
    return isinstance(source, str) and source.lower().startswith(("http://", "https://"))


def _entries(
    catalog: Catalog, location: str, records: Iterable[SourceRecord], baseline: dict[str, str]
) -> list[dict[str, Any]]:
    """One entry per distinct image of ``records``; URL entries get a fetch row too."""
    entries: list[dict[str, Any]] = []
    seen: set[str] = set()
    for record in records:
        remote = record.path is None
        where = record.url if remote else str(record.path)
        assert where is not None
        if where in seen:  # a manifest listing one image twice: take it once
            continue
        seen.add(where)
        entries.append(
            {
                "kind": EntryKind.URL if remote else EntryKind.PATH,
                "location": where,
                "product_id": record.product_id,
                "label": record.label,
                "title": record.title,
                "page_url": record.page_url,
                "replaces": baseline.get(where),
            }
        )
    urls = [e | {"url": e["location"]} for e in entries if e["kind"] == EntryKind.URL]
    if urls:  # keep the fetch queue (lookalike ingest's view of URLs) in step
        fetch_ids = catalog.add_fetches(location, urls)
        for entry in entries:
            if entry["kind"] == EntryKind.URL:
                entry["fetch_id"] = fetch_ids.get(entry["location"])
    return entries


def prepare(intake: Intake, job_id: int) -> list[int]:
    """The first stage: crawl the site of a crawl job that has no entries yet, then start.

    Returns the chunks to fetch. Planning twice (a duplicate delivery) crawls
    twice but adds the entries once.
    """
    job = _require_job(intake.catalog, job_id)
    if not job.planned:
        plan_crawl(intake, job)
    return start_job(intake.catalog, job_id)


def plan_crawl(intake: Intake, job: Job) -> bool:
    """Crawl ``job.source`` and give the job one entry per image found; False if planned already."""
    catalog, settings = intake.catalog, intake.settings
    assert job.source is not None
    result = crawl(
        job.source,
        intake.fetcher,
        max_depth=settings.crawl_max_depth,
        max_pages=settings.crawl_max_pages,
        sitemaps_from_robots=settings.crawl_sitemaps_from_robots,
    )
    history = catalog.source_history(job.source, before_job_id=job.id)
    baseline = _baseline(history)
    pages = {e.location: e.page_url for e in history if e.state == EntryState.DONE}
    previous = [ImageState(url, pages.get(url), item) for url, item in baseline.items()]
    diff = diff_crawls(previous, result)
    entries = _entries(catalog, job.source, result.records, baseline)
    removals = [{"location": url, "item_id": baseline[url]} for url in diff.removed]
    failed = [f"{f.url}: {f.reason}" for f in result.failures]
    note = f"crawled {len(result.pages)} pages, {len(entries)} images" + (
        "; stopped at the page limit" if result.truncated else ""
    ) + (f"; {len(failed)} pages failed: " + "; ".join(failed[:5]) if failed else "")
    planned = catalog.plan_job(job.id, entries, removals, message=note)
    log.info("job %d: %s (%d removed since the last crawl, %d kept unverified)",
             job.id, note, len(removals), len(diff.unverified))
    return planned


def _baseline(history: Iterable[JobEntry]) -> dict[str, str]:
    """``{location: item id}`` the source offered after its earlier jobs.

    The latest done entry of a location wins; a later removal of that same item
    means the location is gone. Failed entries change nothing: a location that
    could not be fetched last time still holds what it held before.
    """
    held: dict[str, str] = {}
    for entry in history:
        if entry.kind == EntryKind.REMOVE:
            if entry.item_id is not None and held.get(entry.location) == entry.item_id:
                del held[entry.location]
        elif entry.state == EntryState.DONE and entry.item_id is not None:
            held[entry.location] = entry.item_id
    return held


def start_job(catalog: Catalog, job_id: int) -> list[int]:
    """Mark the job running; the chunks that still have entries to fetch."""
    job = _require_job(catalog, job_id)
    if job.kind == JobKind.REINDEX:
        raise ValueError(f"job {job_id} is a re-index; run it with reindex()")
    catalog.set_job_status(job_id, JobStatus.RUNNING, only_from=(JobStatus.QUEUED,))
    return catalog.job_chunks(job_id, [EntryState.PENDING])


def retry_failed(catalog: Catalog, job_id: int) -> list[int]:
    """Make a job's failed fetches pending again; the chunks to fetch (empty: none failed)."""
    job = _require_job(catalog, job_id)
    if job.kind == JobKind.REINDEX:
        raise ValueError(f"job {job_id} is a re-index; start a new one instead of a retry")
    if catalog.reset_failed_entries(job_id) == 0:
        return []
    return start_job(catalog, job_id)


# -- 2. fetch -------------------------------------------------------------------


@dataclass
class Intake:
    """What the fetch stage needs; build it once per process (the fetcher is reusable)."""

    settings: Settings
    catalog: Catalog
    fetcher: Fetcher
    images: BlobStore
    thumbnails: BlobStore

    @classmethod
    def from_settings(
        cls, settings: Settings, catalog: Catalog, fetcher: Fetcher | None = None
    ) -> Intake:
        return cls(
            settings,
            catalog,
            fetcher or Fetcher.from_settings(settings),
            BlobStore.for_images(settings),
            BlobStore.for_thumbnails(settings),
        )


@dataclass(frozen=True)
class ChunkReport:
    done: int = 0
    failed: int = 0
    skipped: int = 0  # already finished by an earlier (or concurrent) delivery


def fetch_chunk(
    intake: Intake,
    job_id: int,
    chunk: int,
    *,
    fatal: tuple[type[BaseException], ...] = (),
) -> ChunkReport:
    """Fetch and store every pending entry of one chunk.

    A failure is recorded on its entry (and, for bytes that are not a usable
    image, on a failed item) and the chunk goes on. Exceptions of the ``fatal``
    types (e.g. a task's soft time limit) are never swallowed.
    """
    catalog = intake.catalog
    job = _require_job(catalog, job_id)
    catalog.set_job_status(job_id, JobStatus.RUNNING, only_from=(JobStatus.QUEUED,))
    done = failed = 0
    pending = catalog.job_entries(job_id, chunk=chunk, states=[EntryState.PENDING])
    for entry in pending:
        outcome = _take_in(intake, job, entry, fatal)
        state, item_id, error, permanent = outcome
        removal = None
        if entry.replaces is not None and (
            (state == EntryState.DONE and item_id != entry.replaces)
            or (state == EntryState.FAILED and permanent)
        ):  # the location now holds other bytes, or nothing: its old item may go
            removal = {"location": entry.location, "item_id": entry.replaces}
        catalog.finish_entry(
            entry.id, state, item_id=item_id, error=error, permanent=permanent, removal=removal
        )
        if entry.fetch_id is not None:
            if state == EntryState.DONE:
                catalog.mark_fetch_done(entry.fetch_id, item_id)
            else:
                catalog.mark_fetch_failed(entry.fetch_id, error or "failed")
        if state == EntryState.DONE:
            done += 1
        else:
            failed += 1
            log.info("job %d: %s failed: %s", job_id, entry.location, error)
    return ChunkReport(done=done, failed=failed, skipped=0 if pending else 1)


def _take_in(
    intake: Intake, job: Job, entry: JobEntry, fatal: tuple[type[BaseException], ...]
) -> tuple[str, str | None, str | None, bool | None]:
    """``(state, item id, error, permanent)`` for one entry."""
    settings = intake.settings
    try:
        if entry.kind == EntryKind.URL:
            data = intake.fetcher.fetch(entry.location).data
            origin = entry.location
        else:
            data = read_limited(Path(entry.location), settings.max_image_bytes)
            origin = Path(entry.location).as_uri()
    except fatal:
        raise
    except FetchError as error:
        return EntryState.FAILED, None, error.reason, error.permanent
    except FileTooLarge as error:
        return EntryState.FAILED, None, error.reason, True
    except OSError as error:
        return EntryState.FAILED, None, f"unreadable file: {error.strerror or error}", True
    except Exception as error:  # a fetcher bug must not stop the chunk; record it
        log.exception("unexpected error taking in %s", entry.location)
        return EntryState.FAILED, None, f"internal error: {error!r}", False

    item_id = content_id(data)
    meta = {
        "product_id": entry.product_id,
        "label": entry.label,
        "title": entry.title,
        "page_url": entry.page_url,
    }
    existing = intake.catalog.get(item_id)
    if (
        existing is not None
        and existing.status != ItemStatus.FAILED
        and _stored(intake.images, existing.stored_path)
    ):
        return EntryState.DONE, item_id, None, None
    try:
        loaded = load_image(
            data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels
        )
        thumbnail = make_thumbnail(loaded.image, settings.thumbnail_size)
    except fatal:
        raise
    except Exception as error:
        reason = error.reason if isinstance(error, ImageRejected) else f"internal error: {error!r}"
        if not isinstance(error, ImageRejected):
            log.exception("unexpected error decoding %s", entry.location)
        intake.catalog.record_failure(
            item_id,
            source=job.source,
            source_url=origin,
            reason=reason,
            size_bytes=len(data),
            **meta,
        )
        return EntryState.FAILED, None, reason, isinstance(error, ImageRejected)
    intake.images.put(item_id, data, loaded.ext)
    intake.thumbnails.put(item_id, thumbnail, THUMBNAIL_EXT)
    intake.catalog.add_item(
        item_id,
        source=job.source,
        source_url=origin,
        stored_path=intake.images.relative(item_id, loaded.ext),
        thumbnail_path=intake.thumbnails.relative(item_id, THUMBNAIL_EXT),
        size_bytes=len(data),
        width=loaded.width,
        height=loaded.height,
        **meta,
    )
    return EntryState.DONE, item_id, None, None


def _stored(images: BlobStore, stored_path: str | None) -> bool:
    if not stored_path:
        return False
    try:
        return images.resolve(stored_path).is_file()
    except ValueError:
        return False


# -- 3. embed -------------------------------------------------------------------


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


# -- 4. index -------------------------------------------------------------------


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
    """
    catalog = engine.catalog
    _require_job(catalog, job_id)
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
        version = engine.update_index()
    removed = apply_removals(engine, job_id)
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
    job = _require_job(catalog, job_id)
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
    removed = engine.remove_items(list(dict.fromkeys(e.item_id for e in doomed)))
    catalog.set_entry_states([e.id for e in doomed], EntryState.REMOVED)
    catalog.set_entry_states([e.id for e in kept], EntryState.KEPT)
    log.info("job %d: removed %d items, kept %d still in use", job_id, removed, len(kept))
    return removed


# -- re-index -------------------------------------------------------------------


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
    job = _require_job(catalog, job_id)
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
    version = engine.indexes.build(
        ids,
        vectors,
        model_version=model_version,
        n_shards=settings.shards,
        factory=settings.index_factory,
        flat_threshold=settings.flat_threshold,
        pq_threshold=settings.pq_threshold,
        activate=False,
    )
    engine.indexes.activate(version)  # verifies every shard, then switches CURRENT
    catalog.mark_indexed(engine._item_ids_for(ids))
    pruned = engine.indexes.prune(keep)
    message = (
        f"index version {version} is current: {len(ids)} vectors of {model_version}"
        + (f", {reembedded} embedded first" if reembedded else "")
        + (f"; pruned {len(pruned)} old versions" if pruned else "")
    )
    catalog.set_job_status(job_id, JobStatus.DONE, message=message)
    log.info("re-index job %d: %s", job_id, message)
    return ReindexOutcome(JobStatus.DONE, version, message, reembedded)


# -- the sweeper and the schedule ------------------------------------------------


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


# -- in-process -------------------------------------------------------------------


def run_inline(
    engine: Lookalike,
    job_id: int,
    *,
    fetcher: Fetcher | None = None,
    threads: int | None = None,
    progress_bar: bool = False,
) -> JobProgress:
    """Run a job's stages in this process: fetch (threads), embed, index."""
    catalog = engine.catalog
    intake = Intake.from_settings(engine.settings, catalog, fetcher)
    chunks = prepare(intake, job_id)
    job = _require_job(catalog, job_id)
    threads = threads or engine.settings.ingest_threads
    bar = tqdm(
        total=len(catalog.job_entries(job_id, states=[EntryState.PENDING], kinds=["url", "path"])),
        disable=not progress_bar, file=sys.stderr, unit="img", desc=f"fetch job {job.id}",
    )  # fmt: skip
    lock = threading.Lock()

    def one(chunk: int) -> None:
        report = fetch_chunk(intake, job_id, chunk)
        with lock:
            bar.update(report.done + report.failed)

    try:
        with ThreadPoolExecutor(threads, thread_name_prefix="fetch") as pool:
            for _ in pool.map(one, chunks):
                pass
    finally:
        bar.close()
    items = [i for i in catalog.job_items(job_id) if i.status == ItemStatus.STORED]
    if items:
        engine.embed_items(items, progress=progress_bar)
    outcome = index_job(engine, job_id)
    if outcome.needs_reindex:
        log.warning("job %d: the index holds another model; run a re-index", job_id)
    return progress(catalog, job_id)


def iter_jobs_progress(catalog: Catalog, limit: int = 20) -> Iterator[JobProgress]:
    for job in catalog.jobs(limit=limit):
        yield progress(catalog, job.id, failures=0)


def _require_job(catalog: Catalog, job_id: int) -> Job:
    job = catalog.get_job(job_id)
    if job is None:
        raise LookupError(f"no job {job_id}")
    return job
