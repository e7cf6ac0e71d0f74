"""What a worker process keeps between tasks: one catalog, one fetcher, one engine.

Loading the model takes seconds, so each process loads it once, on its first
embedding or index task (or at start, for processes serving those queues: see
:mod:`workers.wiring`), and keeps it. The engine is replaced when the current
model changes (``lookalike models use``), so a re-index after a model change
embeds with the new one. After a fork nothing is inherited: :func:`reset` runs
in every new pool process.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from indexer.catalog import Catalog
from indexer.config import Settings, load_settings
from indexer.jobs import Intake

if TYPE_CHECKING:
    from celery import Celery

    from indexer.engine import Lookalike

log = logging.getLogger(__name__)

_lock = threading.RLock()
_catalog: Catalog | None = None
_intake: Intake | None = None
_engine: tuple[str, Lookalike] | None = None
_owner: tuple[str, str] | None = None


def settings(app: Celery | None = None) -> Settings:
    found = getattr(app, "lookalike_settings", None) if app is not None else None
    return found if found is not None else load_settings()


def _check_owner(current: Settings) -> None:
    """One process serves one data directory; another one (tests) starts afresh."""
    global _owner
    key = (str(current.home), current.catalog_url)
    if _owner != key:
        reset()
        _owner = key


def catalog(app: Celery | None = None) -> Catalog:
    global _catalog
    with _lock:
        _check_owner(settings(app))
        if _catalog is None:
            _catalog = Catalog(settings(app))
        return _catalog


def intake(app: Celery | None = None) -> Intake:
    global _intake
    with _lock:
        _check_owner(settings(app))
        if _intake is None:
            _intake = Intake.from_settings(settings(app), catalog(app))
        return _intake


def engine(app: Celery | None = None) -> Lookalike:
    """The process's engine, with the current model loaded (once)."""
    global _engine
    from indexer.engine import Lookalike
    from indexer.model.modeldir import current_model_spec

    current = settings(app)
    spec = current_model_spec(current)
    with _lock:
        _check_owner(current)
        if _engine is not None and _engine[0] != spec:
            log.warning("the current model changed from %s to %s; reloading", _engine[0], spec)
            _engine[1].close()
            _engine = None
        if _engine is None:
            opened = Lookalike(current)
            _ = opened.model  # load now, once per process
            log.info("loaded model %s", opened.model.version)
            _engine = (spec, opened)
        return _engine[1]


def reset(*, close: bool = True) -> None:
    """Forget everything; ``close=False`` after a fork (the parent's connections are not ours)."""
    global _catalog, _intake, _engine, _owner
    with _lock:
        if close and _engine is not None:
            _engine[1].close()
        if close and _catalog is not None:
            _catalog.close()
        _catalog = _intake = _engine = None
        _owner = None
