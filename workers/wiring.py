"""Worker process signals: fresh state in every pool process, the model loaded up front,
and a sweep soon after a worker starts (it may replace one that was killed)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from celery import signals

from workers.names import TASK_NAMES
from workers.state import state_of

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger(__name__)

PRELOAD_KEY = "lookalike_preload_model"  # set by `lookalike worker` for embed/index queues


def connect(app: Celery) -> None:
    state = state_of(app)

    def process_init(**_: object) -> None:
        state.reset(close=False)  # the parent's connections are not this process's
        if app.conf.get(PRELOAD_KEY):
            state.engine()

    def ready(sender=None, **_: object) -> None:
        # This worker may replace one that died holding tasks (the embedded transport
        # cannot give them back). Once a quiet period has passed, look for stalled jobs;
        # beat's periodic sweep covers the rest.
        if state.settings.sweep_interval > 0:
            app.send_task(TASK_NAMES["sweep"], countdown=state.settings.stalled_after + 1)

    signals.worker_process_init.connect(process_init, weak=False)
    signals.worker_ready.connect(ready, weak=False)
