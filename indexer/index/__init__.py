"""The sharded faiss index: choose, build, version, verify, update and search.

Modules, one job each: ``factory`` (which index for which size), ``shards``
(routing ids to shards, verified shard files), ``builder`` (train and fill shards),
``manifest`` (what a version holds), ``versions`` (versions on disk, CURRENT and
its history, activate, rollback, pruning), ``writer`` (builds, copy-on-write
adds and removes), ``store`` (the :class:`IndexStore` facade callers hold: the
versions, their writer and the re-index lock), ``searcher`` (parallel search and
top-k merge). The locks themselves are in :mod:`indexer.locks`.
"""

from typing import Any

from indexer.index.errors import (
    FactoryError,
    IndexBuildError,
    IndexDiskFullError,
    IndexLoadError,
    IndexLockedError,
    IndexNotFoundError,
    IndexStoreError,
    NothingToRollBack,
    ReindexRunning,
)
from indexer.index.factory import IndexSpec, resolve_spec
from indexer.index.manifest import Manifest, ShardEntry

# Imported on first use: ``indexer.locks`` needs the errors above while the store
# needs ``indexer.locks``, so importing the store here would import in a circle.
_LAZY = {
    "IndexStore": "indexer.index.store",
    "LoadedIndex": "indexer.index.versions",
    "MAX_K": "indexer.index.searcher",
    "ShardedSearcher": "indexer.index.searcher",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'indexer.index' has no attribute {name!r}")


__all__ = [
    "MAX_K",
    "FactoryError",
    "IndexBuildError",
    "IndexDiskFullError",
    "IndexLoadError",
    "IndexLockedError",
    "IndexNotFoundError",
    "IndexSpec",
    "IndexStore",
    "IndexStoreError",
    "LoadedIndex",
    "Manifest",
    "NothingToRollBack",
    "ReindexRunning",
    "ShardEntry",
    "ShardedSearcher",
    "resolve_spec",
]
