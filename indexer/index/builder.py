"""Vectors in, trained and filled shard files out.

One index choice (:class:`~indexer.index.factory.IndexSpec`) serves every shard of
a version, resolved from the *smallest* shard so that every shard has enough
points to train its centroids; ids are uniform hashes, so shards differ in size
by a fraction of a percent. Shards are built one after another, each using all
cores through faiss's OpenMP, and freed once written: peak memory is one shard's
index beside the input, not all of them.

The input is never copied whole: it may be a memory-mapped file larger than memory
(10 million 1,280-d vectors are 51 GB). A shard's rows are gathered from it a chunk
at a time (:data:`ADD_ROWS`), and only its training sample is copied in one piece.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from indexer.index.errors import IndexBuildError
from indexer.index.factory import IndexSpec, create_index, ready_to_add
from indexer.index.manifest import ShardEntry, shard_filename
from indexer.index.shards import check_ids, split_by_shard, write_shard

log = logging.getLogger(__name__)

_CHECK_ROWS = 1 << 16
# Rows per add call. faiss's IndexPreTransform (PCA, L2norm) transforms a whole batch
# into a new buffer before adding it: 262,144 x 256-d is 268 MB, 10M would be 10 GB.
ADD_ROWS = 1 << 18


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
    spec: IndexSpec,
    dim: int,
    ids: np.ndarray,
    vectors: np.ndarray,
    *,
    rows: np.ndarray | None = None,
    seed: int = 0,
) -> faiss.Index:
    """Create an index for ``spec``, train it on a sample of the vectors and add them.

    ``rows``: positions of this index's vectors in ``ids``/``vectors`` (``None``: all
    of them); they are gathered a chunk at a time, never copied as a whole.
    """
    index = create_index(spec, dim)
    n = len(ids) if rows is None else len(rows)
    if not index.is_trained:
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
            train = vectors[sample if rows is None else rows[sample]]
        else:
            train = vectors if rows is None else vectors[rows]
        started = time.perf_counter()
        index.train(train)
        del train
        log.info(
            "trained %s on %d vectors in %.1fs", spec.factory, size, time.perf_counter() - started
        )
    ready_to_add(index)
    if n:
        started = time.perf_counter()
        add_rows(index, ids, vectors, rows)
        log.info("added %d vectors in %.1fs", n, time.perf_counter() - started)
    return index


def add_rows(
    index: faiss.Index, ids: np.ndarray, vectors: np.ndarray, rows: np.ndarray | None = None
) -> None:
    """``index.add_with_ids`` for ``rows`` of ``(ids, vectors)`` (``None``: all), in chunks
    of :data:`ADD_ROWS`: a slice of a contiguous array is a view, so only a chunk of
    gathered rows (and faiss's transformed copy of one chunk) is ever allocated."""
    n = len(ids) if rows is None else len(rows)
    for start in range(0, n, ADD_ROWS):
        stop = min(n, start + ADD_ROWS)
        if rows is None:
            index.add_with_ids(vectors[start:stop], ids[start:stop])
        else:
            chunk = rows[start:stop]
            index.add_with_ids(vectors[chunk], ids[chunk])


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
        rows = None if len(shard.rows) == len(ids) else shard.rows  # one shard: all rows
        index = fill_index(spec, dim, ids, vectors, rows=rows, seed=seed + shard.shard)
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
