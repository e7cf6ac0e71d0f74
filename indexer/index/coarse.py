"""Coarse quantizers: how an IVF index picks the inverted lists a query probes.

faiss's default coarse quantizer is an exact ``IndexFlat`` over the centroids;
``IVF{nlist}_HNSW32`` puts an HNSW graph over them instead (``IndexHNSWFlat``, whose
``storage`` is that same exact ``IndexFlat``). The graph finds a query's nearest
centroids in far fewer than ``nlist`` comparisons, but approximately: asked for all
``nlist`` lists it returns fewer (its search stops early), so a filtered search that
must score every member would miss some.

So the graph assigns the many (k-means training, adding vectors: where comparing each
of millions of vectors with every centroid costs minutes to hours), and queries are
assigned exactly where that is as cheap: :func:`search_assigned_exactly` scores the
query against every centroid in the storage and scans the best ``nprobe`` lists through
faiss's ``search_preassigned``; always when every list is probed (exact filters), and
at any ``nprobe`` up to :data:`EXACT_ASSIGN_MAX_NLIST` lists. Single-thread cost of
assigning one query at 256-d (tests/bench/bench_coarse_quantizer.py: bench_index.py's
data, 300k points, centroids sampled from them; flat scan vs graph at efSearch =
nprobe, and the share of the exact best nprobe lists the graph finds):

=======  ======  ==========  ===========  ================
nlist    nprobe  flat scan   graph        graph's lists
=======  ======  ==========  ===========  ================
4,096    128     0.10 ms     0.13 ms      0.995
16,384   256     0.49 ms     0.52 ms      0.989
65,536   512     4.1 ms      1.5 ms       0.987
=======  ======  ==========  ===========  ================

(efSearch = 2·nprobe finds 0.996-0.999 of them at 1.4-4x the graph's cost.) Alone on a
core the two cost the same at 16,384 lists; but a query's flat scan runs in an OpenMP
region, and on busy cores that waits for descheduled threads (see
:mod:`indexer.index.searcher`). Searching the whole IVF-PQ index with 2 OpenMP threads
on 2 shared cores, 1M vectors in 16,384 lists, nprobe 256, alternating rounds: p50
8.2 ms with the flat quantizer, 2.8 ms with the graph at efSearch = 2·nprobe (recall@10
0.675 and 0.680), 1.7 ms at efSearch = nprobe (0.666). So from 16,384 lists, where
'auto' puts the graph, it assigns queries too, at efSearch = 2·nprobe
(:func:`quantizer_parameters`); an explicit graph over fewer lists assigns them exactly.
"""

from __future__ import annotations

import faiss
import numpy as np

# Centroid scores held at once by search_assigned_exactly: queries x nprobe x 12 B.
_SCORES_PER_CHUNK = 1 << 22
# Queries of an index with at most this many lists are assigned by the exact scan,
# beyond by the graph (module doc).
EXACT_ASSIGN_MAX_NLIST = 8_192
# The graph search keeps ef = 2·nprobe candidates (faiss takes max(efSearch, k)):
# +0.014 recall@10 over ef = nprobe at 16,384 lists (module doc).
HNSW_EF_PER_NPROBE = 2


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


def search_assigned_exactly(
    index: faiss.Index,
    queries: np.ndarray,
    k: int,
    params: faiss.SearchParameters | None,
    nprobe: int,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Top-``k`` over the ``nprobe`` lists whose centroids score best, exactly.

    Returns ``None`` where ``index.search`` is the one to use: a flat coarse quantizer
    (already exact), not an IVF index behind its transforms, or a graph over more than
    :data:`EXACT_ASSIGN_MAX_NLIST` lists probed at fewer than all of them (the graph is
    the cheaper there). ``params``' selector (``sel``) is kept.
    """
    ivf, transforms = _ivf_behind_transforms(index)
    graph = graph_quantizer(index) if ivf is not None else None
    if graph is None:
        return None
    nlist = int(ivf.nlist)
    nprobe = min(int(nprobe), nlist)
    if nprobe < nlist and nlist > EXACT_ASSIGN_MAX_NLIST:
        return None
    centroids = faiss.downcast_index(graph.storage)
    exact = faiss.SearchParametersIVF(nprobe=nprobe)
    if params is not None and params.sel is not None:
        exact.sel = params.sel
    x = np.ascontiguousarray(queries, dtype=np.float32)
    for transform in transforms:
        x = np.ascontiguousarray(transform.apply(x), dtype=np.float32)
    scores = np.empty((len(x), k), np.float32)
    labels = np.empty((len(x), k), np.int64)
    step = max(1, _SCORES_PER_CHUNK // nprobe)
    for start in range(0, len(x), step):
        chunk = np.ascontiguousarray(x[start : start + step])
        coarse_scores, lists = centroids.search(chunk, nprobe)  # exactly scored
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
            exact,
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
