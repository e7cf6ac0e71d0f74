"""Vectors in, trained and filled shard files out.

One index choice (:class:`~indexer.index.factory.IndexSpec`) serves every shard of
a version, resolved from the *smallest* shard so that every shard has enough
points to train its centroids; ids are uniform hashes, so shards differ in size
by a fraction of a percent. Shards are built one after another, each using all
cores through faiss's OpenMP, and freed once written: peak memory is one shard's
index beside the input, not all of them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from indexer.index.errors import IndexBuildError
from indexer.index.factory import IndexSpec, create_index
from indexer.index.manifest import ShardEntry, shard_filename
from indexer.index.shards import check_ids, split_by_shard, write_shard

log = logging.getLogger(__name__)

_CHECK_ROWS = 1 << 16


def check_vectors(vectors: np.ndarray, dim: int | None = None) -> np.ndarray:
    """``vectors`` as C-contiguous float32 ``[n, dim]`` with finite values (no copy if so)."""
    array = np.asarray(vectors)
    if array.ndim != 2:
        raise ValueError(f"vectors must be a 2-D array [n, dim], got shape {array.shape}")
    if dim is not None and array.shape[1] != dim:
        raise ValueError(f"vectors have dimension {array.shape[1]}, the index has {dim}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    for start in range(0, len(array), _CHECK_ROWS):
        if not np.isfinite(array[start : start + _CHECK_ROWS]).all():
            raise ValueError("vectors contain NaN or infinite values")
    return array


def check_pairs(ids: np.ndarray, vectors: np.ndarray, dim: int | None = None):
    """Validate an ``(ids, vectors)`` pair of equal length; return them normalised."""
    ids = check_ids(ids)
    vectors = check_vectors(vectors, dim)
    if len(ids) != len(vectors):
        raise ValueError(f"{len(ids)} ids but {len(vectors)} vectors")
    return ids, vectors


@dataclass(frozen=True)
class ShardData:
    """The rows of one shard, as positions into the caller's arrays."""

    shard: int
    rows: np.ndarray


def plan_shards(ids: np.ndarray, n_shards: int) -> list[ShardData]:
    return [ShardData(s, rows) for s, rows in enumerate(split_by_shard(ids, n_shards))]


def fill_index(
    spec: IndexSpec, dim: int, ids: np.ndarray, vectors: np.ndarray, *, seed: int = 0
) -> faiss.Index:
    """Create an index for ``spec``, train it on a sample of ``vectors`` and add them."""
    index = create_index(spec, dim)
    if not index.is_trained:
        n = len(vectors)
        if n < max(spec.nlist, 1):
            raise IndexBuildError(
                f"{n} vectors are too few to train {spec.factory!r}: IVF needs at least "
                f"nlist={spec.nlist} (faiss recommends 39·nlist = {39 * spec.nlist}); "
                "use 'auto' or a smaller nlist"
            )
        size = min(n, spec.train_size or n)
        if size < n:
            rng = np.random.default_rng(seed)
            sample = np.sort(rng.choice(n, size=size, replace=False))
            train = vectors[sample]
        else:
            train = vectors
        started = time.perf_counter()
        index.train(train)
        del train
        log.info(
            "trained %s on %d vectors in %.1fs", spec.factory, size, time.perf_counter() - started
        )
    if len(ids):
        index.add_with_ids(vectors, ids)
    return index


def build_shards(
    version_dir: Path,
    ids: np.ndarray,
    vectors: np.ndarray,
    spec: IndexSpec,
    plan: list[ShardData],
    *,
    seed: int = 0,
) -> list[ShardEntry]:
    """Build, write and free each shard in turn; return the manifest entries."""
    dim = vectors.shape[1]
    entries = []
    for shard in plan:
        started = time.perf_counter()
        if len(shard.rows) == len(ids):  # one shard: no copy of the input
            shard_ids, shard_vectors = ids, vectors
        else:
            shard_ids, shard_vectors = ids[shard.rows], vectors[shard.rows]
        index = fill_index(spec, dim, shard_ids, shard_vectors, seed=seed + shard.shard)
        del shard_vectors
        name = shard_filename(shard.shard)
        size, digest = write_shard(index, version_dir / name)
        entries.append(ShardEntry(file=name, count=int(index.ntotal), bytes=size, sha256=digest))
        del index
        log.info(
            "shard %d/%d: %d vectors, %d bytes, %.1fs",
            shard.shard + 1,
            len(plan),
            len(shard.rows),
            size,
            time.perf_counter() - started,
        )
    return entries
