"""Coarse quantizers: how an IVF index picks the inverted lists a query probes.

faiss's default coarse quantizer is an exact ``IndexFlat`` over the centroids;
``IVF{nlist}_HNSW32`` puts an HNSW graph over them instead (``IndexHNSWFlat``, whose
``storage`` is that same exact ``IndexFlat``). The graph finds a query's nearest
centroids in far fewer than ``nlist`` comparisons, but approximately: asked for all
``nlist`` lists it returns fewer (its search stops early), so a filtered search that
must score every member would miss some. :func:`search_every_list` therefore assigns
every list with exact centroid scores from the storage and scans them through faiss's
``search_preassigned``, exact whatever the quantizer.

How wide the graph search is: :func:`quantizer_parameters`.
"""

from __future__ import annotations

import faiss
import numpy as np

# Centroid scores held at once by search_every_list: queries x nlist x 12 bytes.
_SCORES_PER_CHUNK = 1 << 22
# The graph search explores ef >= nprobe candidates (faiss takes max(efSearch, k)).
# tests/bench/bench_coarse_quantizer.py: see HNSW_EF_PER_NPROBE's comment in factory.
HNSW_EF_PER_NPROBE = 1


def graph_quantizer(index: faiss.Index) -> faiss.IndexHNSW | None:
    """The HNSW coarse quantizer of the IVF index inside ``index``, or ``None``."""
    ivf = _ivf_behind_transforms(index)[0]
    if ivf is None:
        return None
    quantizer = faiss.downcast_index(ivf.quantizer)
    return quantizer if isinstance(quantizer, faiss.IndexHNSW) else None


def quantizer_parameters(index: faiss.Index, nprobe: int) -> faiss.SearchParameters | None:
    """Per-call parameters of ``index``'s coarse quantizer for ``nprobe`` lists, or
    ``None`` where it has none (an exact flat quantizer)."""
    if graph_quantizer(index) is None:
        return None
    return faiss.SearchParametersHNSW(efSearch=max(1, HNSW_EF_PER_NPROBE * int(nprobe)))


def search_every_list(
    index: faiss.Index, queries: np.ndarray, k: int, params: faiss.SearchParameters | None
) -> tuple[np.ndarray, np.ndarray] | None:
    """Top-``k`` over every inverted list of ``index``, with exact centroid scores.

    Returns ``None`` where ``index.search`` with ``nprobe = nlist`` is already exact (a
    flat coarse quantizer, or not an IVF index behind its transforms): the caller
    searches as usual. ``params``' selector (``sel``) is kept.
    """
    ivf, transforms = _ivf_behind_transforms(index)
    if ivf is None or graph_quantizer(index) is None:
        return None
    centroids = faiss.downcast_index(graph_quantizer(index).storage)
    nlist = int(ivf.nlist)
    every = faiss.SearchParametersIVF(nprobe=nlist)
    if params is not None and params.sel is not None:
        every.sel = params.sel
    x = np.ascontiguousarray(queries, dtype=np.float32)
    for transform in transforms:
        x = np.ascontiguousarray(transform.apply(x), dtype=np.float32)
    scores = np.empty((len(x), k), np.float32)
    labels = np.empty((len(x), k), np.int64)
    step = max(1, _SCORES_PER_CHUNK // nlist)
    for start in range(0, len(x), step):
        chunk = np.ascontiguousarray(x[start : start + step])
        coarse_scores, lists = centroids.search(chunk, nlist)  # every list, exactly scored
        out_scores, out_labels = scores[start : start + step], labels[start : start + step]
        ivf.search_preassigned_c(
            len(chunk),
            faiss.swig_ptr(chunk),
            k,
            faiss.swig_ptr(lists),
            faiss.swig_ptr(coarse_scores),
            faiss.swig_ptr(out_scores),
            faiss.swig_ptr(out_labels),
            False,
            every,
        )
    return scores, labels


def _ivf_behind_transforms(
    index: faiss.Index,
) -> tuple[faiss.IndexIVF | None, list[faiss.VectorTransform]]:
    """The IVF index reached through ``IndexPreTransform`` wrappers only, and their
    transforms in order (``(None, [])`` for anything else, e.g. an ``IDMap``)."""
    transforms: list[faiss.VectorTransform] = []
    node = faiss.downcast_index(index)
    while isinstance(node, faiss.IndexPreTransform):
        chain = node.chain
        transforms += [faiss.downcast_VectorTransform(chain.at(i)) for i in range(chain.size())]
        node = faiss.downcast_index(node.index)
    return (node, transforms) if isinstance(node, faiss.IndexIVF) else (None, [])
