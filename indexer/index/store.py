"""The index store: one object over a data directory's index versions, for every caller.

The engine (``engine.indexes``), the workers and the API hold an :class:`IndexStore`.
It is the versions (:class:`~indexer.index.versions.IndexVersions`: list, load,
verify, CURRENT and its history, activate, rollback, prune) with the writes of
:class:`~indexer.index.writer.IndexWriter` (build, add, remove) and the re-index
lock (:func:`indexer.locks.reindex_flock`) attached. The layout on disk is
described in :mod:`indexer.index.versions`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from indexer.config import Settings
from indexer.index.versions import IndexVersions, LoadedIndex
from indexer.index.writer import BuildOptions, IndexWriter
from indexer.locks import reindex_flock

__all__ = ["REINDEX_LOCK_NAME", "IndexStore", "LoadedIndex"]

REINDEX_LOCK_NAME = ".reindex.lock"


class IndexStore(IndexVersions):
    """All index versions under one directory, with their writer and re-index lock.

    ``lock_timeout``: seconds to wait for another writer (``None``: wait forever).
    ``defaults``: shards and index choice of builds that do not say.
    """

    def __init__(
        self,
        root: Path,
        *,
        lock_timeout: float | None = None,
        defaults: BuildOptions | None = None,
    ) -> None:
        super().__init__(root, lock_timeout=lock_timeout)
        self.writer = IndexWriter(self, defaults)

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs) -> IndexStore:
        """The store under ``settings.index_dir``; builds default to the settings' choices."""
        kwargs.setdefault("defaults", BuildOptions.from_settings(settings))
        return cls(settings.index_dir, **kwargs)

    def build(self, ids: np.ndarray, vectors: np.ndarray, **options) -> str:
        """A new version from scratch: see :meth:`IndexWriter.build`."""
        return self.writer.build(ids, vectors, **options)

    def add(
        self, ids: np.ndarray, vectors: np.ndarray, *, expected_model_version: str | None = None
    ) -> str:
        """Add or replace vectors copy-on-write: see :meth:`IndexWriter.add`."""
        return self.writer.add(ids, vectors, expected_model_version=expected_model_version)

    def remove(self, ids: np.ndarray) -> str:
        """Remove vectors by id copy-on-write: see :meth:`IndexWriter.remove`."""
        return self.writer.remove(ids)

    def activate_without(self, version: str, gone: Callable[[], np.ndarray]) -> str:
        """Switch to a built version minus what is gone by then: see
        :meth:`IndexWriter.activate_without`."""
        return self.writer.activate_without(version, gone)

    def reindex_lock(self) -> contextlib.AbstractContextManager[None]:
        """Hold ``index/.reindex.lock`` for a whole re-index, or raise ``ReindexRunning``.

        Per machine only; :func:`indexer.locks.reindex_lock_factory` adds the Redis
        lock for workers on several machines.
        """
        return reindex_flock(self.root / REINDEX_LOCK_NAME)
