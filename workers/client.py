"""Queue work for the workers from any process (the CLI, the HTTP API), by task name.

Nothing here imports the tasks themselves (names come from :mod:`workers.names`,
routes and serialisation from :mod:`workers.config`): a job is written to the
catalog first, then one message names it, so the caller needs the catalog and
the broker, not torch.
"""

from __future__ import annotations

from pathlib import Path

from celery import Celery

from indexer import jobs
from indexer.catalog import Catalog, Job, JobKind
from indexer.config import Settings
from workers.config import celery_config
from workers.names import TASK_NAMES


def _app(settings: Settings) -> Celery:
    app = Celery("lookalike-client", set_as_current=False)
    app.conf.update(celery_config(settings))
    return app


def send(settings: Settings, task: str, *args: object, **kwargs: object) -> None:
    """Send one task by its short name (see :data:`workers.names.TASK_NAMES`)."""
    app = _app(settings)
    try:
        # Progress lives in the catalog: no result to wait for, so no subscription to the
        # result backend (which, with Redis down, would add a long reconnect loop).
        app.send_task(TASK_NAMES[task], args=args, kwargs=kwargs, ignore_result=True)
    finally:
        app.close()


def submit(
    catalog: Catalog, settings: Settings, source: str | Path, *, register: bool = True
) -> Job:
    """Record a job for a folder or manifest and hand it to the workers."""
    job = jobs.submit_source(catalog, settings, source, kind=JobKind.INGEST, register=register)
    send(settings, "start", job.id)
    return job


def retry(catalog: Catalog, settings: Settings, job_id: int) -> int:
    """Queue a job's failed fetches again (only those); how many chunks were queued."""
    chunks = jobs.retry_failed(catalog, job_id)
    if chunks:
        send(settings, "start", job_id)
    return len(chunks)


def reindex(catalog: Catalog, settings: Settings) -> Job:
    """Record a re-index job and queue it for the index worker."""
    job = jobs.new_reindex_job(catalog)
    send(settings, "reindex", job_id=job.id)
    return job
