"""The Celery configuration for :class:`indexer.config.Settings`: queues, routes, beat, broker.

Shared by the app (:mod:`workers.app`) and the senders (:mod:`workers.client`), so
that both route and serialise alike.

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
holds one task per process, so a slow task does not sit on others).
"""

from __future__ import annotations

from typing import Any

from kombu import Exchange, Queue

from indexer.config import Settings
from workers.names import TASK_NAMES, routes

# Settings that do not depend on the deployment.
_FIXED: dict[str, Any] = {
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ["json"],
    "result_accept_content": ["json"],
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
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
    "timezone": "UTC",
    "enable_utc": True,
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
    reindex_limit = settings.reindex_time_limit
    config: dict[str, Any] = {
        **_FIXED,
        "task_soft_time_limit": settings.task_soft_time_limit,
        "task_time_limit": settings.task_time_limit,
        # A re-index rebuilds everything: its own (longer) limits, still below the
        # visibility timeout. Annotations set them on the task in every app.
        "task_annotations": {
            TASK_NAMES["reindex"]: {
                "time_limit": reindex_limit,
                "soft_time_limit": reindex_limit * 0.95,
            }
        },
        "task_queues": [Queue(name, Exchange(name), routing_key=name) for name in queues],
        "task_default_queue": settings.queue_ingest,
        "task_default_exchange": settings.queue_ingest,
        "task_default_routing_key": settings.queue_ingest,
        "task_routes": routes(settings),
        "beat_schedule": beat_schedule(settings),
    }
    if not settings.broker_url:
        config.update(_embedded(settings))
        return config
    config["broker_url"] = settings.broker_url
    config["result_backend"] = settings.result_backend or (
        settings.broker_url if settings.broker_is_redis else None
    )
    if settings.broker_is_redis:
        config.update(_redis(settings))
    return config


def _redis(settings: Settings) -> dict[str, Any]:
    return {
        "broker_transport_options": {
            "visibility_timeout": settings.broker_visibility_timeout,
            "global_keyprefix": settings.broker_key_prefix,
            "unacked_restore_interval": settings.broker_restore_interval,
            "unacked_restore_throttle": 1,
            "socket_timeout": 30.0,
            "socket_connect_timeout": 10.0,
            "health_check_interval": 10,
        },
        "result_backend_transport_options": {
            "global_keyprefix": settings.broker_key_prefix,
            "visibility_timeout": settings.broker_visibility_timeout,
        },
        "redis_socket_timeout": 30.0,
        "redis_socket_connect_timeout": 10.0,
        "redis_retry_on_timeout": True,
    }


def _embedded(settings: Settings) -> dict[str, Any]:
    """The filesystem transport's folders (created here) and file results."""
    broker = settings.broker_dir
    queue_dir, control_dir, claimed = broker / "queue", broker / "control", broker / "claimed"
    for folder in (queue_dir, control_dir, claimed):
        folder.mkdir(parents=True, exist_ok=True)
    results = settings.home / "celery-results"
    results.mkdir(parents=True, exist_ok=True)
    return {
        "broker_url": "filesystem://localhost/",
        "broker_transport": "workers.broker:Transport",
        "broker_transport_options": {
            "data_folder_in": str(queue_dir),
            "data_folder_out": str(queue_dir),
            "control_folder": str(control_dir),
            "claimed_folder": str(claimed),
            "polling_interval": 0.1,
        },
        "result_backend": settings.result_backend or f"file://{results}",
        # No fan-out over files: remote control and worker events are off.
        "worker_enable_remote_control": False,
    }
