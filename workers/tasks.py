"""The Celery tasks: thin shells that call :mod:`indexer.jobs` with ids.

Each task takes a job id (and a chunk number); the catalog says what is left to
do, so a task delivered twice, or redone after its worker died, finds its work
done and passes the baton on. The chain for a job::

    start_job (ingest) ─▶ fetch_chunk × chunks (ingest) ─▶ embed_chunk (embed)
                                                              ─▶ index_job (index)

``index_job`` runs on the single-consumer ``index`` queue; it also applies a
re-crawl's removals and marks the job done. ``reindex`` runs there too. Both
queue ``map`` (the t-SNE map of the version they made) on the ``embed`` queue:
compute work that must not hold up the single index writer. Beat
sends ``recrawl``, ``reindex`` and ``sweep`` (see :func:`workers.app.beat_schedule`).

Errors: a failed download is data, recorded on its entry, not a task failure.
Transient infrastructure errors (database, broker, a busy index lock) retry the
task with backoff; whatever still fails is left to the sweeper, which queues a
stalled job's work again from the catalog state.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import redis
import sqlalchemy as sa
from celery.exceptions import SoftTimeLimitExceeded
from kombu.exceptions import OperationalError as BrokerError

from indexer import jobs, maps
from indexer.catalog import JobKind, JobStatus
from indexer.index.errors import IndexLockedError, IndexNotFoundError
from indexer.index.store import IndexStore
from indexer.locks import reindex_lock_factory
from workers import runtime
from workers.app import TASK_NAMES

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger(__name__)

TRANSIENT = (sa.exc.OperationalError, redis.RedisError, BrokerError, IndexLockedError)
RETRY = {
    "autoretry_for": TRANSIENT,
    "retry_backoff": 1,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 8,
}


def register(app: Celery) -> None:
    """Add the Lookalike tasks to ``app`` (names in :data:`workers.app.TASK_NAMES`)."""
    settings = app.lookalike_settings

    @app.task(name=TASK_NAMES["start"], bind=True, shared=False, **RETRY)
    def start_job(self, job_id: int) -> int:
        chunks = jobs.prepare(runtime.intake(self.app), job_id)  # crawls a site first
        for chunk in chunks:
            fetch_chunk.apply_async((job_id, chunk))
        if not chunks:  # nothing to fetch (all done, or only removals): finish it
            index_job.apply_async((job_id,))
        return len(chunks)

    @app.task(name=TASK_NAMES["fetch"], bind=True, shared=False, **RETRY)
    def fetch_chunk(self, job_id: int, chunk: int) -> dict:
        try:
            report = jobs.fetch_chunk(
                runtime.intake(self.app), job_id, chunk, fatal=(SoftTimeLimitExceeded,)
            )
        except SoftTimeLimitExceeded:
            # Slow sites: what is fetched is recorded; queue the rest and stop here.
            log.warning("job %d chunk %d: soft time limit; queuing the rest", job_id, chunk)
            fetch_chunk.apply_async((job_id, chunk))
            return {"requeued": True}
        embed_chunk.apply_async((job_id, chunk))
        return {"done": report.done, "failed": report.failed}

    @app.task(name=TASK_NAMES["embed"], bind=True, shared=False, **RETRY)
    def embed_chunk(self, job_id: int, chunk: int) -> int:
        embedded = jobs.embed_chunk(runtime.engine(self.app), job_id, chunk)
        index_job.apply_async((job_id,))
        return embedded

    @app.task(name=TASK_NAMES["index"], bind=True, shared=False, **RETRY)
    def index_job(self, job_id: int) -> dict:
        engine = runtime.engine(self.app)
        before = engine.indexes.current_version()
        outcome = jobs.index_job(engine, job_id)
        if outcome.version is not None and outcome.version != before:
            catalogue_map.apply_async((outcome.version,))  # the new version's map, off the writer
        if outcome.needs_reindex:  # a new model: one re-index (re-embedding all) unless queued
            pending = jobs.scheduled_reindex_job(engine.catalog, interval=0)
            if pending is not None:
                reindex.apply_async(kwargs={"job_id": pending.id})
        return {"version": outcome.version, "removed": outcome.removed,
                "finished": outcome.finished}

    @app.task(
        name=TASK_NAMES["reindex"],
        bind=True,
        shared=False,
        time_limit=settings.reindex_time_limit,
        soft_time_limit=settings.reindex_time_limit * 0.95,
        **RETRY,
    )
    def reindex(self, job_id: int | None = None) -> dict:
        if job_id is None:  # from beat: record the job, then run it under its id
            current = runtime.settings(self.app)
            job = jobs.scheduled_reindex_job(runtime.catalog(self.app), current.reindex_interval)
            if job is None:
                log.info("scheduled re-index not needed: another one is recent or under way")
                return {"job": None, "status": JobStatus.SKIPPED.value}
            reindex.apply_async(kwargs={"job_id": job.id})
            return {"job": job.id, "status": JobStatus.QUEUED.value}
        engine = runtime.engine(self.app)
        lock = reindex_lock_factory(self.app.lookalike_settings)
        outcome = jobs.reindex(engine, job_id, lock=lock)
        if outcome.status == JobStatus.DONE and outcome.version is not None:
            catalogue_map.apply_async((outcome.version,))
        if outcome.status == JobStatus.DONE:
            for waiting in engine.catalog.jobs(
                limit=None, statuses=[JobStatus.QUEUED, JobStatus.RUNNING]
            ):
                if waiting.kind != JobKind.REINDEX:
                    index_job.apply_async((waiting.id,))
        return {"job": job_id, "status": outcome.status, "message": outcome.message}

    @app.task(name=TASK_NAMES["map"], bind=True, shared=False, **RETRY)
    def catalogue_map(self, version: str) -> dict:
        """Compute and cache an index version's t-SNE map (skipped when cached already).

        A version no longer current is skipped: an ingest makes a version per chunk,
        and only the latest one's map is worth minutes of compute.
        """
        settings_now = runtime.settings(self.app)
        live = IndexStore.from_settings(settings_now).current_version()
        if live != version:
            log.info("index version %s is not current (%s is); no map made", version, live)
            return {"version": version, "computed": False, "current": live}
        try:
            data, computed = maps.ensure_map(settings_now, runtime.catalog(self.app), version)
        except IndexNotFoundError:  # pruned before its map was made: nothing to draw
            log.info("index version %s is gone; no map made", version)
            return {"version": version, "computed": False}
        return {"version": version, "computed": computed, "points": data["sampled"],
                "seconds": data["seconds"]}

    @app.task(name=TASK_NAMES["recrawl"], bind=True, shared=False, **RETRY)
    def recrawl(self) -> list[int]:
        current = runtime.settings(self.app)
        catalog = runtime.catalog(self.app)
        started = []
        for source in jobs.due_recrawls(catalog, current.recrawl_interval):
            try:
                job = jobs.submit_source(catalog, current, source, kind=JobKind.RECRAWL)
            except (ValueError, OSError) as error:
                catalog.create_job(
                    JobKind.RECRAWL, source=source, status=JobStatus.FAILED, message=str(error)
                )
                log.warning("re-crawl of %s failed: %s", source, error)
                continue
            start_job.apply_async((job.id,))
            started.append(job.id)
        return started

    @app.task(name=TASK_NAMES["sweep"], bind=True, shared=False, **RETRY)
    def sweep(self, stalled_after: float | None = None) -> int:
        current = runtime.settings(self.app)
        work = jobs.stalled_work(
            runtime.catalog(self.app),
            current.stalled_after if stalled_after is None else stalled_after,
        )
        senders = {"fetch": fetch_chunk, "embed": embed_chunk, "index": index_job,
                   "start": start_job, "reindex": reindex}
        for item in work:
            if item.stage == "reindex":
                reindex.apply_async(kwargs={"job_id": item.job_id})
            elif item.chunk is None:
                senders[item.stage].apply_async((item.job_id,))
            else:
                senders[item.stage].apply_async((item.job_id, item.chunk))
        return len(work)
