"""The map of one index version: sample its ids, read their vectors, lay out, join the catalog.

Ids come from the version's own shards (what that version serves); vectors come
from the vector store of the version's model, the source of truth, so an IVF-PQ
index's lossy codes are never what the map is drawn from. The sample is uniform
over the sorted ids with a seeded generator: the same version, settings and seed
give the same map.
"""

from __future__ import annotations

import logging
import time

import faiss
import numpy as np

from indexer.catalog import Catalog
from indexer.config import Settings
from indexer.index.errors import IndexNotFoundError
from indexer.index.manifest import utc_now_iso
from indexer.index.store import IndexStore, LoadedIndex
from indexer.maps.cache import FORMAT_VERSION, load_map, save_map
from indexer.maps.layout import compute_layout
from indexer.vectors import VectorStore

log = logging.getLogger(__name__)


def shard_ids(index: faiss.Index) -> np.ndarray:
    """The int64 ids one shard holds (IDMap-wrapped flat codes, or any IVF index)."""
    if hasattr(index, "id_map"):  # IndexIDMap / IndexIDMap2 after read_index's downcast
        return faiss.vector_to_array(index.id_map).astype(np.int64)
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        raise ValueError(f"cannot list the ids of a {type(index).__name__} shard")
    lists = ivf.invlists
    parts = []
    for number in range(ivf.nlist):
        size = lists.list_size(number)
        if size:
            pointer = lists.get_ids(number)
            parts.append(faiss.rev_swig_ptr(pointer, size).copy())
            lists.release_ids(number, pointer)
    return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, np.int64)


def version_ids(loaded: LoadedIndex) -> np.ndarray:
    """Every id in an index version, sorted."""
    parts = [shard_ids(shard) for shard in loaded.shards]
    return np.sort(np.concatenate(parts)) if parts else np.empty(0, np.int64)


def sample_ids(ids: np.ndarray, max_points: int, seed: int) -> np.ndarray:
    """Up to ``max_points`` of ``ids`` (sorted), uniformly at random, the same for a seed."""
    if max_points < 1:
        raise ValueError(f"max_points must be at least 1, got {max_points}")
    ids = np.sort(np.asarray(ids, dtype=np.int64))
    if len(ids) <= max_points:
        return ids
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(ids, size=max_points, replace=False))


def build_map(
    settings: Settings,
    catalog: Catalog,
    version: str | None = None,
    *,
    max_points: int | None = None,
    clusters: int | None = None,
    perplexity: float | None = None,
    seed: int | None = None,
) -> dict:
    """Compute (not cache) the map of ``version`` (default: the current one)."""
    started = time.perf_counter()
    max_points = settings.map_max_points if max_points is None else max_points
    clusters = settings.map_clusters if clusters is None else clusters
    perplexity = settings.map_perplexity if perplexity is None else perplexity
    seed = settings.map_seed if seed is None else seed
    store = IndexStore.from_settings(settings)
    loaded = store.load(version)  # the current one by default; verified shards
    manifest = loaded.manifest
    ids = version_ids(loaded)
    del loaded
    chosen = sample_ids(ids, max_points, seed)
    vectors_store = VectorStore(settings.vectors_dir, manifest.model_version, manifest.dim)
    found_ids, vectors = vectors_store.load(only=chosen)
    items = catalog.by_vector_ids(found_ids.tolist())
    keep = np.array([int(v) in items for v in found_ids], dtype=bool)
    if int(keep.sum()) < len(chosen):
        log.info(
            "map of %s: %d of %d sampled ids have no vector or catalog item any more",
            manifest.version, len(chosen) - int(keep.sum()), len(chosen),
        )  # fmt: skip
    found_ids, vectors = found_ids[keep], vectors[keep]
    layout = compute_layout(vectors, clusters=clusters, perplexity=perplexity, seed=seed)
    points = []
    for vector_id, (x, y), cluster in zip(found_ids, layout.xy, layout.clusters, strict=True):
        item = items[int(vector_id)]
        points.append({
            "item_id": item.id,
            "x": round(float(x), 5),
            "y": round(float(y), 5),
            "cluster": int(cluster),
            "label": item.label,
            "product_id": item.product_id,
            "title": item.title,
        })  # fmt: skip
    seconds = time.perf_counter() - started
    log.info("map of index %s: %d of %d vectors, %d clusters, %.1f s",
             manifest.version, len(points), len(ids), layout.k, seconds)  # fmt: skip
    return {
        "format": FORMAT_VERSION,
        "index_version": manifest.version,
        "model_version": manifest.model_version,
        "computed_at": utc_now_iso(),
        "seconds": round(seconds, 3),
        "method": layout.method,
        "total": int(manifest.total),
        "sampled": len(points),
        "clusters": int(layout.k),
        "points": points,
    }


def ensure_map(
    settings: Settings, catalog: Catalog, version: str | None = None, *, force: bool = False,
    **options,
) -> tuple[dict, bool]:
    """The cached map of ``version``, computing and caching it when missing.

    Returns ``(map, computed)``. A second worker asked for a version already
    cached skips the work; one racing the first computes it too and the later
    atomic rename wins, both whole. ``options`` go to :func:`build_map`.
    """
    version = version or IndexStore.from_settings(settings).current_version()
    if version is None:
        raise IndexNotFoundError("no index version yet: build one before asking for its map")
    if not force:
        cached = load_map(settings, version)
        if cached is not None:
            return cached, False
    data = build_map(settings, catalog, version, **options)
    save_map(settings, data)
    return data, True
