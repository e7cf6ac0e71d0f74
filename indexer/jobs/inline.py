"""A whole job in this process: what ``lookalike ingest`` and ``Lookalike.ingest`` run.

The same stages as the workers' (:mod:`indexer.jobs.stages`), one after the
other: crawl a site first if the job is one, take every entry in (a few images
prepared at once on threads), embed what was stored, update the index.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

from tqdm import tqdm

from indexer.catalog import EntryState, ItemStatus, JobEntry
from indexer.intake import Intake, Taken
from indexer.jobs.progress import JobProgress, progress, require_job
from indexer.jobs.stages import fetch_chunk, index_job
from indexer.jobs.submit import prepare
from indexer.sources.fetch import Fetcher

if TYPE_CHECKING:
    from indexer.engine import Lookalike

log = logging.getLogger(__name__)


def run_inline(
    engine: Lookalike,
    job_id: int,
    *,
    fetcher: Fetcher | None = None,
    threads: int | None = None,
    progress_bar: bool = False,
) -> JobProgress:
    """Run a job's stages in this process: take in (threads), embed, index; its progress."""
    catalog = engine.catalog
    intake = Intake.from_settings(engine.settings, catalog, fetcher)
    chunks = prepare(intake, job_id)
    job = require_job(catalog, job_id)
    threads = threads or engine.settings.ingest_threads
    bar = tqdm(
        total=catalog.job_counts(job_id)[0][EntryState.PENDING], disable=not progress_bar,
        file=sys.stderr, unit="img", desc=f"ingest job {job.id}",
    )  # fmt: skip
    seen = {"added": 0, "failed": 0}

    def tick(entry: JobEntry, taken: Taken) -> None:
        seen["added"] += taken.created
        seen["failed"] += taken.state == EntryState.FAILED
        bar.update()
        bar.set_postfix(seen, refresh=False)

    try:
        for chunk in chunks:
            fetch_chunk(intake, job_id, chunk, threads=threads, on_entry=tick)
    finally:
        bar.close()
    items = [i for i in catalog.job_items(job_id) if i.status == ItemStatus.STORED]
    if items:
        engine.embed_items(items, progress=progress_bar)
    outcome = index_job(engine, job_id)
    if outcome.needs_reindex:
        log.warning("job %d: the index holds another model; run a re-index", job_id)
    return progress(catalog, job_id)
