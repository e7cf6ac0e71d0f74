"""What a worker process keeps between tasks: one catalog, one intake, one engine.

One :class:`WorkerState` per Celery app (``create_app`` attaches it; a task reaches
it as ``state_of(self.app)``), the way the API keeps an ``ApiState`` per Flask app.
Loading the model takes seconds, so each process loads it once, on its first
embedding or index task (or at start, for processes serving those queues: see
:mod:`workers.wiring`), and keeps it. The engine is replaced when the current
model changes (``lookalike models use``), so a re-index after a model change
embeds with the new one. After a fork nothing is inherited: every new pool
process calls :meth:`WorkerState.reset` with ``close=False``.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from indexer.catalog import Catalog
from indexer.config import Settings
from indexer.jobs import Intake

if TYPE_CHECKING:
    from celery import Celery

    from indexer.engine import Lookalike

log = logging.getLogger(__name__)


class WorkerState:
    """The settings of one app and what its worker process opened for them, lazily."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.RLock()  # a threads pool shares one state
        self._catalog: Catalog | None = None
        self._intake: Intake | None = None
        self._engine: tuple[str, Lookalike] | None = None  # (model spec, engine)

    @property
    def catalog(self) -> Catalog:
        with self._lock:
            if self._catalog is None:
                self._catalog = Catalog(self.settings)
            return self._catalog

    @property
    def intake(self) -> Intake:
        """The fetch stage's collaborators (one fetcher per process: its rate limits)."""
        with self._lock:
            if self._intake is None:
                self._intake = Intake.from_settings(self.settings, self.catalog)
            return self._intake

    def engine(self) -> Lookalike:
        """The process's engine with the current model loaded (once, again after a change)."""
        from indexer.engine import Lookalike  # torch: only in processes that embed
        from indexer.model.modeldir import current_model_spec

        spec = current_model_spec(self.settings)
        with self._lock:
            if self._engine is not None and self._engine[0] != spec:
                log.warning("the current model changed from %s to %s; reloading",
                            self._engine[0], spec)
                self._engine[1].close()
                self._engine = None
            if self._engine is None:
                opened = Lookalike(self.settings)
                _ = opened.model  # load now, once per process
                log.info("loaded model %s", opened.model.version)
                self._engine = (spec, opened)
            return self._engine[1]

    def reset(self, *, close: bool = True) -> None:
        """Forget everything; ``close=False`` after a fork (the parent's connections)."""
        with self._lock:
            if close and self._engine is not None:
                self._engine[1].close()
            if close and self._catalog is not None:
                self._catalog.close()
            self._catalog = self._intake = self._engine = None

    def close(self) -> None:
        self.reset(close=True)


def state_of(app: Celery) -> WorkerState:
    """The state ``create_app`` attached to ``app``."""
    state = getattr(app, "lookalike", None)
    if not isinstance(state, WorkerState):
        raise RuntimeError(f"{app!r} was not made by workers.app.create_app: no Lookalike state")
    return state
