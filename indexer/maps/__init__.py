"""Catalogue maps: a t-SNE picture of an index version, cached per version.

Modules, one job each: ``layout`` (PCA, t-SNE with openTSNE, faiss k-means,
normalised to [0, 1]), ``build`` (sample an index version's vectors, lay them
out, join the catalog), ``cache`` (one atomically written JSON file per index
version under ``home/maps``, pruning, the "queued" markers the API uses), ``png``
(a scatter-plot PNG with Pillow).

The API serves a cached map and queues a missing one on the ``embed`` queue
(minutes of compute must not hold up the single index writer); ``lookalike map``
computes one in-process.
"""

from indexer.maps.build import build_map, ensure_map, sample_ids, version_ids
from indexer.maps.cache import (
    cached_versions,
    claim_queue_slot,
    latest_map,
    load_map,
    map_path,
    maps_dir,
    prune_maps,
    release_queue_slot,
    save_map,
)
from indexer.maps.layout import Layout, auto_clusters, compute_layout
from indexer.maps.png import render_png

__all__ = [
    "Layout",
    "auto_clusters",
    "build_map",
    "cached_versions",
    "claim_queue_slot",
    "compute_layout",
    "ensure_map",
    "latest_map",
    "load_map",
    "map_path",
    "maps_dir",
    "prune_maps",
    "release_queue_slot",
    "render_png",
    "sample_ids",
    "save_map",
    "version_ids",
]
