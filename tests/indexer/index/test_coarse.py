"""Coarse quantizers: an HNSW graph over the centroids, and exact probing of every list."""

from __future__ import annotations

import faiss
import numpy as np

from indexer.index import coarse
from indexer.index.coarse import graph_quantizer, quantizer_parameters, search_assigned_exactly
from indexer.index.factory import HNSW_ADD_EF, create_index, ready_to_add, resolve_spec

THRESHOLDS = {"flat_threshold": 1_000, "pq_threshold": 10**6}


def _filled(factory, synth, n=8_000, dim=32):
    ids, vectors = synth.random_ids(n), synth.clustered(n, dim)
    index = create_index(resolve_spec(factory, n, dim, **THRESHOLDS), dim)
    index.train(vectors)
    ready_to_add(index)  # as the builder does
    index.add_with_ids(vectors, ids)
    return index, ids, vectors


def _project(index, x):
    """The index's PCA and L2norm transforms applied to ``x``."""
    chain = faiss.downcast_index(index).chain
    for i in range(chain.size()):
        x = faiss.downcast_VectorTransform(chain.at(i)).apply(x)
    return x


def test_a_graph_quantizer_misses_lists_that_exact_assignment_scans(synth, monkeypatch):
    """Asked for all 256 lists, the graph returns fewer; exact assignment scans all of
    them with exact centroid scores: IVF-Flat then equals brute force, filter or not,
    however many lists the index has."""
    monkeypatch.setattr(coarse, "EXACT_ASSIGN_MAX_NLIST", 16)  # every list: exact anyway
    index, ids, vectors = _filled("PCA16,L2norm,IVF256_HNSW32,Flat", synth)
    quantizer = graph_quantizer(index)
    assert quantizer is not None and quantizer.hnsw.efSearch == HNSW_ADD_EF
    queries = synth.clustered(30, 32, seed=7)
    projected = _project(index, queries)  # PCA16, L2norm: the space the lists live in
    assert (quantizer.search(projected, 256)[1] < 0).any()  # the graph stops early

    base = _project(index, vectors)
    truth_scores, truth_rows = faiss.knn(projected, base, 10, metric=faiss.METRIC_INNER_PRODUCT)
    scores, found = search_assigned_exactly(index, queries, 10, None, 256)
    assert (found == ids[truth_rows]).all()
    np.testing.assert_allclose(scores, truth_scores, rtol=1e-4, atol=1e-5)

    members = np.sort(ids[np.argsort(base @ projected[0])[:3]])  # least like query 0
    selector = faiss.IDSelectorBatch(len(members), faiss.swig_ptr(members))
    params = faiss.SearchParametersIVF(nprobe=4, sel=selector)
    _, within = search_assigned_exactly(index, queries[:1], 5, params, 256)
    assert sorted(within[0, :3].tolist()) == members.tolist() and (within[0, 3:] == -1).all()


def test_flat_quantizers_keep_the_ordinary_search_and_graphs_get_a_wide_search(synth):
    flat, _, vectors = _filled("IVF64,Flat", synth, n=3_000, dim=8)
    assert graph_quantizer(flat) is None and quantizer_parameters(flat, 16) is None
    assert search_assigned_exactly(flat, vectors[:2], 3, None, 64) is None  # already exact
    graph, _, _ = _filled("IVF64_HNSW32,SQfp16", synth, n=3_000, dim=8)
    params = quantizer_parameters(graph, 16)
    assert isinstance(params, faiss.SearchParametersHNSW) and params.efSearch >= 16


def test_queries_are_assigned_exactly_up_to_a_number_of_lists_then_by_the_graph(synth, monkeypatch):
    index, ids, vectors = _filled("IVF64_HNSW32,Flat", synth, n=4_000, dim=16)
    queries = synth.clustered(20, 16, seed=3)
    centroids = faiss.downcast_index(graph_quantizer(index).storage)
    _, best_lists = centroids.search(queries, 4)
    lists_of = centroids.search(vectors, 1)[1][:, 0]  # exact assignment; the graph's
    members = np.flatnonzero(np.isin(lists_of, best_lists[0]))  # may differ for a few
    truth = faiss.knn(queries[:1], vectors[members], 5, metric=faiss.METRIC_INNER_PRODUCT)[1]
    _, found = search_assigned_exactly(index, queries, 5, None, 4)
    assert len(set(found[0].tolist()) & set(ids[members][truth[0]].tolist())) >= 4
    monkeypatch.setattr(coarse, "EXACT_ASSIGN_MAX_NLIST", 32)
    assert search_assigned_exactly(index, queries, 5, None, 4) is None  # the graph's turn
    assert search_assigned_exactly(index, queries, 5, None, 64) is not None  # every list
