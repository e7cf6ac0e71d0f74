"""The Celery app factory: ``create_app(settings)`` builds a configured app with the tasks.

Nothing is configured at import time. The ``lookalike worker`` and ``lookalike
beat`` commands create an app from the environment (``LOOKALIKE_*``), as does
``celery -A workers`` (see ``workers/__init__``); tests create several, each with
its own settings, in one process. Every app gets:

* its configuration from :func:`workers.config.celery_config` (broker, queues,
  routes, beat schedule, delivery guarantees);
* the tasks of :mod:`workers.tasks`, defined once at module level with
  ``shared_task`` and bound by Celery to every app (names in :mod:`workers.names`);
* a :class:`~workers.state.WorkerState`, the per-process catalog, intake and
  engine that its tasks reach as ``state_of(self.app)``;
* the worker signals of :mod:`workers.wiring`.

Tasks take ids, never image bytes or vectors, and every task is idempotent (see
:mod:`indexer.jobs`).
"""

from __future__ import annotations

from celery import Celery

import workers.tasks  # noqa: F401  (defines the shared tasks every app binds)
from indexer.config import Settings, load_settings
from workers import wiring
from workers.config import celery_config
from workers.state import WorkerState


def create_app(settings: Settings | None = None) -> Celery:
    """A configured app with the Lookalike tasks and its own worker state."""
    settings = settings or load_settings()
    app = Celery("lookalike", set_as_current=False)
    app.conf.update(celery_config(settings))
    app.lookalike = WorkerState(settings)
    wiring.connect(app)
    return app
