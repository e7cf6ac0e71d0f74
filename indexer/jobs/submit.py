"""Submitting a job: a folder's, a manifest's or a crawled site's images as its entries.

When the source was taken in before, the entries remember which item each
location held (``replaces``) and locations the source no longer lists become
*removal* entries: that is how a re-crawl finds new, changed and removed images.
A source given as an http(s) URL is a site to crawl: its job is written without
entries, and :func:`prepare` (the first stage) crawls it
(:mod:`indexer.sources.crawl`) and adds them; an image is only removed when the
crawl is sure it is gone (:func:`~indexer.sources.crawl.diff_crawls`), never
because a page timed out.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from indexer.catalog import (
    Catalog,
    EntryKind,
    EntryState,
    Job,
    JobEntry,
    JobKind,
    JobStatus,
)
from indexer.config import Settings
from indexer.intake import Intake, records_for
from indexer.jobs.progress import require_job
from indexer.sources.crawl import ImageState, crawl, diff_crawls
from indexer.sources.records import SourceRecord

log = logging.getLogger(__name__)


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
    entries = _entries(records, baseline)
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


def _entries(records: Iterable[SourceRecord], baseline: dict[str, str]) -> list[dict[str, Any]]:
    """One entry per distinct image of ``records``."""
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
    return entries


def prepare(intake: Intake, job_id: int) -> list[int]:
    """The first stage: crawl the site of a crawl job that has no entries yet, then start.

    Returns the chunks to fetch. Planning twice (a duplicate delivery) crawls
    twice but adds the entries once. A job recorded failed (its sender gave up on
    a broker that hung, and the message arrived after all) is not started: the
    caller was told nothing was taken in.
    """
    job = require_job(intake.catalog, job_id)
    if job.status == JobStatus.FAILED:
        log.warning("job %d is failed (%s); not starting it", job_id, job.message)
        return []
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
    entries = _entries(result.records, baseline)
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
    job = require_job(catalog, job_id)
    if job.kind == JobKind.REINDEX:
        raise ValueError(f"job {job_id} is a re-index; run it with reindex()")
    catalog.set_job_status(job_id, JobStatus.RUNNING, only_from=(JobStatus.QUEUED,))
    return catalog.job_chunks(job_id, [EntryState.PENDING])


def retry_failed(catalog: Catalog, job_id: int) -> list[int]:
    """Make a job's failed fetches pending again; the chunks to fetch (empty: none failed)."""
    job = require_job(catalog, job_id)
    if job.kind == JobKind.REINDEX:
        raise ValueError(f"job {job_id} is a re-index; start a new one instead of a retry")
    if catalog.reset_failed_entries(job_id) == 0:
        return []
    return start_job(catalog, job_id)
