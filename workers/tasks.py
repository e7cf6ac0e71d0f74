"""The Celery tasks: thin shells that call :mod:`indexer.jobs` with ids.

Defined once, at module level, with ``shared_task``: Celery binds a copy of each to
every app, so each app built by :func:`workers.app.create_app` (with its own
settings) has all of them. A task finds its app's per-process state through
``self.app`` (:func:`workers.state.state_of`) and queues the next stage on the same
app by name (:func:`_send`), never through another app's task object.

Each task takes a job id (and a chunk number); the catalog says what is left to
do, so a task delivered twice, or redone after its worker died, finds its work
done and passes the baton on. The chain for a job::

    start_job (ingest) ─▶ fetch_chunk × chunks (ingest) ─▶ embed_chunk (embed)
                                                              ─▶ index_job (index)

``index_job`` runs on the single-consumer ``index`` queue; it also applies a
re-crawl's removals and pending deletes, and marks the job done. ``reindex`` and
``apply_deletions`` (the API's deletes) run there too. Both
queue ``map`` (the t-SNE map of the version they made) on the ``embed`` queue:
compute work that must not hold up the single index writer. Beat
sends ``recrawl``, ``reindex`` and ``sweep`` (see :func:`workers.config.beat_schedule`).

Errors: a failed download is data, recorded on its entry, not a task failure.
Transient infrastructure errors (database, broker, a busy index lock) retry the
task with backoff; whatever still fails is left to the sweeper, which queues a
stalled job's work again from the catalog state.
"""

from __future__ import annotations

import logging

import redis
import sqlalchemy as sa
from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from kombu.exceptions import OperationalError as BrokerError

from indexer import jobs, maps
from indexer.catalog import JobKind, JobStatus
from indexer.index.errors import IndexLockedError, IndexNotFoundError
from indexer.index.store import IndexStore
from indexer.locks import reindex_lock_factory
from workers.names import TASK_NAMES
from workers.state import state_of

log = logging.getLogger(__name__)

TRANSIENT = (sa.exc.OperationalError, redis.RedisError, BrokerError, IndexLockedError)
RETRY = {
    "autoretry_for": TRANSIENT,
    "retry_backoff": 1,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 8,
}


def _send(task: Task, stage: str, *args: object, **kwargs: object) -> None:
    """Queue ``stage`` (a key of ``TASK_NAMES``) on the app running ``task``."""
    task.app.tasks[TASK_NAMES[stage]].apply_async(args, kwargs)


@shared_task(name=TASK_NAMES["start"], bind=True, **RETRY)
def start_job(self: Task, job_id: int) -> int:
    chunks = jobs.prepare(state_of(self.app).intake, job_id)  # crawls a site first
    for chunk in chunks:
        _send(self, "fetch", job_id, chunk)
    if not chunks:  # nothing to fetch (all done, or only removals): finish it
        _send(self, "index", job_id)
    return len(chunks)


@shared_task(name=TASK_NAMES["fetch"], bind=True, **RETRY)
def fetch_chunk(self: Task, job_id: int, chunk: int) -> dict:
    intake = state_of(self.app).intake
    try:
        report = jobs.fetch_chunk(intake, job_id, chunk, fatal=(SoftTimeLimitExceeded,))
    except SoftTimeLimitExceeded:
        # Slow sites: what is fetched is recorded; queue the rest and stop here.
        log.warning("job %d chunk %d: soft time limit; queuing the rest", job_id, chunk)
        _send(self, "fetch", job_id, chunk)
        return {"requeued": True}
    _send(self, "embed", job_id, chunk)
    return {"done": report.done, "failed": report.failed}


@shared_task(name=TASK_NAMES["embed"], bind=True, **RETRY)
def embed_chunk(self: Task, job_id: int, chunk: int) -> int:
    embedded = jobs.embed_chunk(state_of(self.app).engine(), job_id, chunk)
    _send(self, "index", job_id)
    return embedded


@shared_task(name=TASK_NAMES["index"], bind=True, **RETRY)
def index_job(self: Task, job_id: int) -> dict:
    engine = state_of(self.app).engine()
    before = engine.indexes.current_version()
    outcome = jobs.index_job(engine, job_id)
    if outcome.version is not None and outcome.version != before:
        _send(self, "map", outcome.version)  # the new version's map, off the writer
    if outcome.needs_reindex:  # a new model: one re-index (re-embedding all) unless queued
        pending = jobs.scheduled_reindex_job(engine.catalog, interval=0)
        if pending is not None:
            _send(self, "reindex", job_id=pending.id)
    return {"version": outcome.version, "removed": outcome.removed,
            "finished": outcome.finished}


@shared_task(name=TASK_NAMES["deletions"], bind=True, **RETRY)
def apply_deletions(self: Task) -> int:
    """The index half of the API's deletes, on the single writer (searches skip them already)."""
    engine = state_of(self.app).engine()
    before = engine.indexes.current_version()
    purged = jobs.apply_deletions(engine)
    after = engine.indexes.current_version()
    if after is not None and after != before:
        _send(self, "map", after)
    return purged


# Its time limits are longer than the others': see task_annotations in workers.config.
@shared_task(name=TASK_NAMES["reindex"], bind=True, **RETRY)
def reindex(self: Task, job_id: int | None = None) -> dict:
    state = state_of(self.app)
    if job_id is None:  # from beat: record the job, then run it under its id
        job = jobs.scheduled_reindex_job(state.catalog, state.settings.reindex_interval)
        if job is None:
            log.info("scheduled re-index not needed: another one is recent or under way")
            return {"job": None, "status": JobStatus.SKIPPED.value}
        _send(self, "reindex", job_id=job.id)
        return {"job": job.id, "status": JobStatus.QUEUED.value}
    engine = state.engine()
    outcome = jobs.reindex(engine, job_id, lock=reindex_lock_factory(state.settings))
    if outcome.status == JobStatus.DONE and outcome.version is not None:
        _send(self, "map", outcome.version)
    if outcome.status == JobStatus.DONE:
        for waiting in engine.catalog.jobs(
            limit=None, statuses=[JobStatus.QUEUED, JobStatus.RUNNING]
        ):
            if waiting.kind != JobKind.REINDEX:
                _send(self, "index", waiting.id)
    return {"job": job_id, "status": outcome.status, "message": outcome.message}


@shared_task(name=TASK_NAMES["map"], bind=True, **RETRY)
def catalogue_map(self: Task, version: str) -> dict:
    """Compute and cache an index version's t-SNE map (skipped when cached already).

    A version no longer current is skipped: an ingest makes a version per chunk,
    and only the latest one's map is worth minutes of compute.
    """
    state = state_of(self.app)
    live = IndexStore.from_settings(state.settings).current_version()
    if live != version:
        log.info("index version %s is not current (%s is); no map made", version, live)
        return {"version": version, "computed": False, "current": live}
    try:
        data, computed = maps.ensure_map(state.settings, state.catalog, version)
    except IndexNotFoundError:  # pruned before its map was made: nothing to draw
        log.info("index version %s is gone; no map made", version)
        return {"version": version, "computed": False}
    return {"version": version, "computed": computed, "points": data["sampled"],
            "seconds": data["seconds"]}


@shared_task(name=TASK_NAMES["recrawl"], bind=True, **RETRY)
def recrawl(self: Task) -> list[int]:
    state = state_of(self.app)
    catalog = state.catalog
    started = []
    for source in jobs.due_recrawls(catalog, state.settings.recrawl_interval):
        try:
            job = jobs.submit_source(catalog, state.settings, source, kind=JobKind.RECRAWL)
        except (ValueError, OSError) as error:
            catalog.create_job(
                JobKind.RECRAWL, source=source, status=JobStatus.FAILED, message=str(error)
            )
            log.warning("re-crawl of %s failed: %s", source, error)
            continue
        _send(self, "start", job.id)
        started.append(job.id)
    return started


@shared_task(name=TASK_NAMES["sweep"], bind=True, **RETRY)
def sweep(self: Task, stalled_after: float | None = None) -> int:
    state = state_of(self.app)
    if stalled_after is None:
        stalled_after = state.settings.stalled_after
    work = jobs.stalled_work(state.catalog, stalled_after)
    for item in work:
        if item.stage == "reindex":
            _send(self, "reindex", job_id=item.job_id)
        elif item.chunk is None:
            _send(self, item.stage, item.job_id)
        else:
            _send(self, item.stage, item.job_id, item.chunk)
    return len(work)
