"""The sharded faiss index: choose, build, version, verify, update and search.

Modules, one job each: ``factory`` (which index for which size), ``shards``
(routing ids to shards, verified shard files), ``builder`` (train and fill shards),
``manifest`` (what a version holds), ``store`` (versions on disk, CURRENT and its
history, rollback, pruning, the writer and re-index locks, copy-on-write updates),
``searcher`` (parallel search and top-k merge).
"""

from indexer.index.errors import (
    FactoryError,
    IndexBuildError,
    IndexLoadError,
    IndexLockedError,
    IndexNotFoundError,
    IndexStoreError,
    NothingToRollBack,
    ReindexRunning,
)
from indexer.index.factory import IndexSpec, resolve_spec
from indexer.index.manifest import Manifest, ShardEntry
from indexer.index.searcher import MAX_K, ShardedSearcher
from indexer.index.store import IndexStore, LoadedIndex, build_index

__all__ = [
    "MAX_K",
    "FactoryError",
    "IndexBuildError",
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
    "build_index",
    "resolve_spec",
]
