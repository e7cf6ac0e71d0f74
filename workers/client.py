"""Queue work for the workers from any process (the CLI, the HTTP API), by task name.

Nothing here imports the tasks themselves (names come from :mod:`workers.names`,
routes and serialisation from :mod:`workers.config`): a job is written to the
catalog first, then one message names it, so the caller needs the catalog and
the broker, not torch.

A broker that is down makes a send fail within a second or two
(:data:`SEND_RETRY_POLICY`, not the workers' long publish retries), with
:class:`BrokerUnavailable`: the caller is waiting (an HTTP request, a command).
The job just recorded is then marked failed with the reason, never left queued
with no message naming it; the caller submits again later (the HTTP API answers
503 with ``Retry-After``). A source to re-crawl is registered only once its first
job is queued.
"""

from __future__ import annotations

import logging
from pathlib import Path

import redis
from celery import Celery
from kombu.exceptions import ChannelError, OperationalError
from kombu.utils.url import maybe_sanitize_url

from indexer import jobs
from indexer.catalog import Catalog, Job, JobKind, JobStatus
from indexer.config import Settings
from workers.config import celery_config
from workers.names import TASK_NAMES

log = logging.getLogger(__name__)


# A sender is waiting for the answer: three tries over about half a second, then
# BrokerUnavailable. (Workers keep task_publish_retry_policy: they outlive a restart.)
SEND_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.25,
                     "interval_max": 0.5}  # fmt: skip
# Seconds a sender waits for the broker to connect or answer, each try: a Redis that
# hangs (stopped, swapping) gives up in seconds, not after the workers' 30 s a try.
SEND_TIMEOUT = 2.0


def _app(settings: Settings) -> Celery:
    app = Celery("lookalike-client", set_as_current=False)
    config = celery_config(settings)
    config["broker_connection_timeout"] = SEND_TIMEOUT
    if settings.broker_is_redis:
        config["broker_transport_options"] = {
            **config["broker_transport_options"],
            "socket_timeout": SEND_TIMEOUT,
            "socket_connect_timeout": SEND_TIMEOUT,
        }
    app.conf.update(config)
    return app


# What a send raises when the broker is not there: kombu's connection errors (Redis's
# own, should one escape kombu's wrapping), the embedded transport's ChannelError (its
# folder unwritable), a socket's OSError.
_UNREACHABLE = (OperationalError, redis.ConnectionError, redis.TimeoutError, ChannelError,
                OSError)  # fmt: skip


class BrokerUnavailable(RuntimeError):
    """The broker did not take the message: nothing was queued (a connection error).

    ``job_id``: the job recorded failed because of it, if any.
    """

    job_id: int | None = None


def send(settings: Settings, task: str, *args: object, **kwargs: object) -> None:
    """Send one task by its short name (see :data:`workers.names.TASK_NAMES`).

    Raises :class:`BrokerUnavailable` when the broker cannot be reached.
    """
    app = _app(settings)
    try:
        # Progress lives in the catalog: no result to wait for, so no subscription to the
        # result backend (which, with Redis down, would add a long reconnect loop).
        app.send_task(TASK_NAMES[task], args=args, kwargs=kwargs, ignore_result=True,
                      retry=True, retry_policy=SEND_RETRY_POLICY)  # fmt: skip
    except _UNREACHABLE as error:
        raise BrokerUnavailable(
            f"the job queue ({_broker_name(settings)}) did not take the {task!r} message: "
            f"{str(error).rstrip('.')}"
        ) from error
    finally:
        app.close()


def submit(
    catalog: Catalog, settings: Settings, source: str | Path, *, register: bool = True
) -> Job:
    """Record a job for a folder or manifest and hand it to the workers.

    With the broker down the job is recorded failed, the source is not registered
    and :class:`BrokerUnavailable` is raised.
    """
    job = jobs.submit_source(catalog, settings, source, kind=JobKind.INGEST, register=False)
    _queue(catalog, settings, job, "start", job.id)
    if register and job.source is not None:
        catalog.register_source(job.source)
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
    _queue(catalog, settings, job, "reindex", job_id=job.id)
    return job


def _queue(catalog: Catalog, settings: Settings, job: Job, task: str, *args, **kwargs) -> None:
    """Send the first message of a job just recorded; if it cannot go, fail the job.

    A job left queued with no message would sit there until a sweeper finds it,
    while the caller was told it failed; recorded failed, it says why and stays put.
    """
    try:
        send(settings, task, *args, **kwargs)
    except BrokerUnavailable as error:
        message = f"not queued: {error}; nothing was taken in, submit it again"
        catalog.set_job_status(job.id, JobStatus.FAILED, message=message,
                               only_from=(JobStatus.QUEUED,))  # fmt: skip
        log.warning("job %d: %s", job.id, message)
        error.job_id = job.id
        raise


def _broker_name(settings: Settings) -> str:
    """The broker's URL without a password, or the embedded transport's folder."""
    if not settings.broker_url:
        return f"embedded, {settings.broker_dir}"
    return maybe_sanitize_url(settings.broker_url)
