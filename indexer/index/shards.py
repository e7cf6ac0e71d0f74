"""Shards: which shard a vector lives in, and durable, verified shard files.

A vector's shard is ``vector_id % n_shards``. Item ids are sha256 digests, so
their 63-bit prefixes are uniform and shards come out the same size without a
lookup table, and any process can route an id to its shard.

Shard files are written through a temp file and renamed, and hashed while they
are written (no second pass over a multi-gigabyte file). Reading checks the size
and sha256 against the manifest before faiss parses a byte: a damaged file is
refused with an error naming it, never served as a smaller or empty index.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import faiss
import numpy as np

from indexer.fsutil import atomic_writer, sha256_file
from indexer.index.errors import IndexLoadError
from indexer.index.manifest import ShardEntry

log = logging.getLogger(__name__)


def check_ids(ids: np.ndarray | list[int]) -> np.ndarray:
    """``ids`` as a 1-D int64 array; vector ids are non-negative (63-bit) by contract."""
    array = np.asarray(ids)
    if array.ndim != 1:
        raise ValueError(f"ids must be 1-D, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"ids must be integers, got dtype {array.dtype}")
    array = array.astype(np.int64, copy=False)
    if array.size and int(array.min()) < 0:
        raise ValueError("ids must be non-negative 63-bit integers (see catalog.vector_id_for)")
    return array


def shard_of(ids: np.ndarray, n_shards: int) -> np.ndarray:
    """Shard number of each id: ``id % n_shards``."""
    if n_shards < 1:
        raise ValueError(f"n_shards must be >= 1, got {n_shards}")
    return (np.asarray(ids, dtype=np.int64) % n_shards).astype(np.int64)


def split_by_shard(ids: np.ndarray, n_shards: int) -> list[np.ndarray]:
    """Row positions of ``ids`` belonging to each shard (in input order)."""
    if n_shards == 1:
        return [np.arange(len(ids), dtype=np.int64)]
    shards = shard_of(ids, n_shards)
    order = np.argsort(shards, kind="stable")
    bounds = np.searchsorted(shards[order], np.arange(n_shards + 1))
    return [order[bounds[s] : bounds[s + 1]] for s in range(n_shards)]


def write_shard(index: faiss.Index, path: Path) -> tuple[int, str]:
    """Serialise ``index`` to ``path`` atomically; return ``(bytes, sha256)``."""
    digest = hashlib.sha256()
    size = 0

    with atomic_writer(path) as handle:

        def sink(chunk: bytes) -> int:
            nonlocal size
            handle.write(chunk)
            digest.update(chunk)
            size += len(chunk)
            return len(chunk)

        faiss.write_index(index, faiss.PyCallbackIOWriter(sink))
    return size, digest.hexdigest()


def verify_shard_file(path: Path, entry: ShardEntry, *, version: str) -> None:
    """Check size and sha256 of a shard file against its manifest entry."""
    where = f"shard {entry.file} of index version {version}"
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise IndexLoadError(f"{where} is missing ({path})") from None
    if size != entry.bytes:
        state = "truncated" if size < entry.bytes else "longer than recorded"
        raise IndexLoadError(
            f"{where} is {state}: {size} bytes, manifest says {entry.bytes} ({path})"
        )
    actual = sha256_file(path)
    if actual != entry.sha256:
        raise IndexLoadError(
            f"{where} fails its checksum (sha256 {actual[:12]}…, manifest says "
            f"{entry.sha256[:12]}…): the file was altered or damaged ({path})"
        )


def read_shard(path: Path, entry: ShardEntry, *, version: str, dim: int,
               mapped: bool = False) -> faiss.Index:
    """Verify then deserialise one shard; raise :class:`IndexLoadError` naming it.

    ``mapped``: the codes stay in the file, memory-mapped read-only (faiss
    ``IO_FLAG_MMAP_IFC``), so every process searching a version shares one copy of
    them in the page cache. Such an index must never be changed: faiss aborts the
    process on an add or remove (the writer reads its own, unmapped copies).
    """
    verify_shard_file(path, entry, version=version)
    where = f"shard {entry.file} of index version {version}"
    flags = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY if mapped else 0
    try:
        index = faiss.read_index(str(path), flags)
    except RuntimeError as exc:
        raise IndexLoadError(f"{where} cannot be read by faiss: {exc}") from exc
    if index.d != dim:
        raise IndexLoadError(f"{where} has dimension {index.d}, manifest says {dim}")
    if index.ntotal != entry.count:
        raise IndexLoadError(f"{where} holds {index.ntotal} vectors, manifest says {entry.count}")
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise IndexLoadError(f"{where} does not use the inner product metric")
    return index
