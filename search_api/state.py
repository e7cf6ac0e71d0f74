"""What one API process holds: the engine (catalog, model), the live searcher and metrics.

The model is loaded when the app is created, so the first query is not a cold
one. The searcher is the engine's: :meth:`Lookalike.search` takes it once and
searches and reports that one version, so a response never mixes two index
versions, while ``CURRENT`` moving makes the next request load the new version
(one request at a time does the loading; the others keep serving the version
they hold).
"""

from __future__ import annotations

import logging

from indexer.config import Settings
from indexer.engine import Lookalike, NoIndexError
from indexer.index.errors import IndexLoadError
from indexer.index.searcher import ShardedSearcher
from indexer.model.embed import Embedder
from search_api.metrics import Metrics

log = logging.getLogger(__name__)


class NotReady(RuntimeError):
    """The model or an index version is not loaded (yet)."""


class ApiState:
    def __init__(self, settings: Settings, engine: Lookalike | None = None):
        self.settings = settings
        self.engine = engine if engine is not None else Lookalike.open(settings)
        self.metrics = Metrics.for_process()
        self._model_loaded = False

    def preload(self) -> None:
        """Load the model, and the current index version if there is one."""
        self.load_model()
        try:
            self.searcher()
        except NotReady as error:
            log.warning("starting without an index: %s", error)
            if self.engine.loaded_searcher() is None:
                self.metrics.serving(None, 0)  # 0 vectors, rather than no series at all

    def load_model(self) -> None:
        self.embedder()

    def embedder(self) -> Embedder:
        """The engine's embedder; loads the model on first use (at start with api_preload)."""
        embedder = self.engine.embedder  # a cached property: the model loads once
        if not self._model_loaded:
            self._model_loaded = True
            self.metrics.model_loaded()
        return embedder

    @property
    def model_loaded(self) -> bool:
        return self._model_loaded

    def searcher(self) -> ShardedSearcher:
        """The searcher of the current version, swapping in a new ``CURRENT`` when it moves.

        The engine loads a new version in one thread at a time; a failed new version
        keeps the old one serving.
        """
        try:
            return self.engine.searcher()
        except (NoIndexError, IndexLoadError) as error:
            raise NotReady(str(error)) from error
        finally:
            self.note_serving()

    def note_serving(self) -> None:
        """Record the index version held in memory (not loading one) in the metrics."""
        held = self.engine.loaded_searcher()
        if held is not None:
            self.metrics.serving(held[0], held[1].index.manifest.total)

    def close(self) -> None:
        self.engine.close()
