"""The Celery app: configuration from :class:`indexer.config.Settings`, queues, routes, beat.

``create_app(settings)`` builds an app; nothing is configured at import time. The
``lookalike worker`` and ``lookalike beat`` commands create one from the
environment (``LOOKALIKE_*``), as does ``celery -A workers`` (see ``workers/__init__``).

Broker and results:

* ``LOOKALIKE_BROKER_URL=redis://…``: Redis for both. Unacknowledged tasks come
  back after ``broker_visibility_timeout``; every time limit is checked to lie
  below it (``Settings``), so Redis never hands a running task to a second worker.
  All keys start with ``broker_key_prefix``.
* unset: the embedded transport (:mod:`workers.broker`, folders under
  ``LOOKALIKE_HOME/broker``) and result files under ``LOOKALIKE_HOME/celery-results``:
  ``lookalike worker`` and ``lookalike beat`` work on one machine with no server.

Delivery: JSON messages only; late acknowledgement (a task is acknowledged when it
has finished, so a worker that dies mid-task leaves it to be delivered again);
a pool child that dies rejects its task back onto the queue; prefetch 1 (a worker
holds one task per process, so a slow task does not sit on others). Tasks take
ids, never image bytes or vectors, and every task is idempotent (see
:mod:`indexer.jobs`).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from indexer.config import Settings, load_settings

log = logging.getLogger(__name__)

TASK_NAMES = {
    "start": "lookalike.start_job",
    "fetch": "lookalike.fetch_chunk",
    "embed": "lookalike.embed_chunk",
    "index": "lookalike.index_job",
    "reindex": "lookalike.reindex",
    "recrawl": "lookalike.recrawl",
    "sweep": "lookalike.sweep",
    "map": "lookalike.map",
}


def routes(settings: Settings) -> dict[str, dict[str, str]]:
    """Which queue each task goes to: fetching is I/O, embedding needs the model, one writer."""
    return {
        TASK_NAMES["start"]: {"queue": settings.queue_ingest},
        TASK_NAMES["fetch"]: {"queue": settings.queue_ingest},
        TASK_NAMES["recrawl"]: {"queue": settings.queue_ingest},
        TASK_NAMES["sweep"]: {"queue": settings.queue_ingest},
        TASK_NAMES["embed"]: {"queue": settings.queue_embed},
        TASK_NAMES["index"]: {"queue": settings.queue_index},
        TASK_NAMES["reindex"]: {"queue": settings.queue_index},
        # t-SNE takes minutes on a large catalogue: compute work, never on the single writer
        TASK_NAMES["map"]: {"queue": settings.queue_embed},
    }


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Periodic tasks from settings; an interval of 0 leaves its entry out.

    Each message expires after one interval: a beat that ran while no worker did
    does not leave a pile of identical re-indexes behind.
    """
    schedule: dict[str, dict[str, Any]] = {}
    entries = (
        ("sweep", settings.sweep_interval),
        ("recrawl", settings.recrawl_interval),
        ("reindex", settings.reindex_interval),
    )
    for name, interval in entries:
        if interval > 0:
            schedule[name] = {
                "task": TASK_NAMES[name],
                "schedule": float(interval),
                "options": {"expires": float(interval)},
            }
    return schedule


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings (lower-case names) for ``settings``."""
    queues = (settings.queue_ingest, settings.queue_embed, settings.queue_index)
    config: dict[str, Any] = {
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": settings.task_soft_time_limit,
        "task_time_limit": settings.task_time_limit,
        "task_queues": [Queue(name, Exchange(name), routing_key=name) for name in queues],
        "task_default_queue": settings.queue_ingest,
        "task_default_exchange": settings.queue_ingest,
        "task_default_routing_key": settings.queue_ingest,
        "task_routes": routes(settings),
        "task_ignore_result": True,  # progress lives in the catalog's job records
        "task_store_errors_even_if_ignored": False,
        "result_expires": 24 * 3600,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,  # a worker outlives a Redis restart
        "broker_channel_error_retry": True,
        "task_publish_retry": True,
        "task_publish_retry_policy": {
            "max_retries": 20,
            "interval_start": 0.2,
            "interval_step": 0.5,
            "interval_max": 3.0,
        },
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_proc_alive_timeout": 120.0,  # a child loads torch and the model first
        "worker_send_task_events": False,
        "worker_hijack_root_logger": True,
        "beat_schedule": beat_schedule(settings),
        "timezone": "UTC",
        "enable_utc": True,
    }
    if settings.broker_url:
        config["broker_url"] = settings.broker_url
        config["result_backend"] = settings.result_backend or (
            settings.broker_url if settings.broker_is_redis else None
        )
        if settings.broker_is_redis:
            transport = {
                "visibility_timeout": settings.broker_visibility_timeout,
                "global_keyprefix": settings.broker_key_prefix,
                "unacked_restore_interval": settings.broker_restore_interval,
                "unacked_restore_throttle": 1,
                "socket_timeout": 30.0,
                "socket_connect_timeout": 10.0,
                "health_check_interval": 10,
            }
            config["broker_transport_options"] = transport
            config["result_backend_transport_options"] = {
                "global_keyprefix": settings.broker_key_prefix,
                "visibility_timeout": settings.broker_visibility_timeout,
            }
            config["redis_socket_timeout"] = 30.0
            config["redis_socket_connect_timeout"] = 10.0
            config["redis_retry_on_timeout"] = True
    else:
        broker = settings.broker_dir
        queue_dir, control_dir = broker / "queue", broker / "control"
        for folder in (queue_dir, control_dir, broker / "claimed"):
            folder.mkdir(parents=True, exist_ok=True)
        config["broker_url"] = "filesystem://localhost/"
        config["broker_transport"] = "workers.broker:Transport"
        config["broker_transport_options"] = {
            "data_folder_in": str(queue_dir),
            "data_folder_out": str(queue_dir),
            "control_folder": str(control_dir),
            "claimed_folder": str(broker / "claimed"),
            "polling_interval": 0.1,
        }
        results = settings.home / "celery-results"
        results.mkdir(parents=True, exist_ok=True)
        config["result_backend"] = settings.result_backend or f"file://{results}"
        # No fan-out over files: remote control and worker events are off.
        config["worker_enable_remote_control"] = False
    return config


def create_app(settings: Settings | None = None) -> Celery:
    """A configured app with the Lookalike tasks registered."""
    from workers import tasks, wiring

    settings = settings or load_settings()
    app = Celery("lookalike", set_as_current=False)
    app.conf.update(celery_config(settings))
    app.lookalike_settings = settings
    tasks.register(app)
    wiring.connect(app)
    return app
