"""Sharded search: exact merge, IVF recall at the default nprobe, validation."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from indexer.index.searcher import MAX_K, ShardedSearcher


@pytest.fixture
def flat(store, synth):
    ids, vectors = synth.random_ids(5_000), synth.clustered(5_000, 32)
    sharded = store.build(ids, vectors, model_version="m1", n_shards=4)
    single = store.build(ids, vectors, model_version="m1", n_shards=1)
    return ids, vectors, store.load(sharded), store.load(single)


def test_sharded_flat_search_equals_exact_search(flat, synth):
    ids, vectors, sharded, single = flat
    queries = synth.clustered(100, 32, seed=9)
    truth_scores, truth_ids = synth.exact_topk(vectors, ids, queries, 10)
    for loaded in (sharded, single):
        with ShardedSearcher(loaded) as searcher:
            scores, found = searcher.search(queries, 10)
        assert (found == truth_ids).all()
        np.testing.assert_allclose(scores, truth_scores, rtol=1e-5, atol=1e-6)
        assert (np.diff(scores, axis=1) <= 1e-7).all()


@pytest.mark.parametrize("n_shards", [1, 2])
def test_ivf_recall_at_default_nprobe(store, synth, n_shards):
    ids = synth.random_ids(20_000)
    points = synth.clustered(20_200, 32)
    vectors, queries = points[:20_000], points[20_000:]
    version = store.build(ids, vectors, model_version="m1", n_shards=n_shards, flat_threshold=1_000)
    loaded = store.load(version)
    assert loaded.manifest.index_type == "ivf_sq"
    _, truth = synth.exact_topk(vectors, ids, queries, 10)
    with ShardedSearcher(loaded) as searcher:
        recall = synth.recall_at_k(searcher.search(queries, 10)[1], truth)
        one_list = synth.recall_at_k(searcher.search(queries, 10, nprobe=1)[1], truth)
        everything = synth.recall_at_k(searcher.search(queries, 10, nprobe=loaded.nlist)[1], truth)
    assert recall >= 0.9, f"recall@10 {recall:.3f} at nprobe={loaded.default_nprobe}"
    assert one_list < recall <= everything
    assert everything >= 0.99  # every list probed: half-float codes only swap near-ties


def test_ivf_pq_recall(store, synth):
    ids = synth.random_ids(12_000)
    points = synth.clustered(12_100, 8)  # PQ8: 8 small k-means keep the test fast
    vectors, queries = points[:12_000], points[12_000:]
    version = store.build(
        ids, vectors, model_version="m1", n_shards=1, flat_threshold=1_000, pq_threshold=10_000
    )
    loaded = store.load(version)
    assert loaded.manifest.factory == f"IVF{loaded.nlist},PQ8"
    _, truth = synth.exact_topk(vectors, ids, queries, 10)
    with ShardedSearcher(loaded) as searcher:
        recall = synth.recall_at_k(searcher.search(queries, 10)[1], truth)
    assert recall >= 0.6, f"IVF-PQ recall@10 {recall:.3f}"


def test_fewer_vectors_than_k_pads_with_minus_one(store, synth):
    ids, vectors = synth.random_ids(5), synth.clustered(5, 8)
    loaded = store.load(store.build(ids, vectors, model_version="m1", n_shards=3))
    with ShardedSearcher(loaded) as searcher:
        scores, found = searcher.search(vectors[0], 8)
    assert sorted(found[0, :5].tolist()) == sorted(ids.tolist())
    assert (found[0, 5:] == -1).all() and np.isneginf(scores[0, 5:]).all()


def test_empty_index_searches_to_nothing(store):
    empty = np.empty((0, 8), np.float32)
    loaded = store.load(store.build(np.empty(0, np.int64), empty, model_version="m1", n_shards=2))
    with ShardedSearcher(loaded) as searcher:
        _, found = searcher.search(np.ones((2, 8), np.float32), 3)
    assert (found == -1).all()


def test_concurrent_searches_agree(flat, synth):
    _, _, sharded, _ = flat
    queries = synth.clustered(40, 32, seed=4)
    with ShardedSearcher(sharded, threads=2) as searcher:
        expected = searcher.search(queries, 5)[1]
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda q: searcher.search(q, 5)[1], queries))
    assert (np.vstack(results) == expected).all()


def test_bad_requests_are_refused_with_the_allowed_range(flat, store, synth):
    _, vectors, sharded, _ = flat
    with ShardedSearcher(sharded) as searcher:
        for k in (0, MAX_K + 1, 2.5, True):
            with pytest.raises(ValueError, match=f"k must be an integer from 1 to {MAX_K}"):
                searcher.search(vectors[:1], k)
        with pytest.raises(ValueError, match="dimension 16, index .* has 32"):
            searcher.search(np.ones((1, 16), np.float32), 5)
        with pytest.raises(ValueError, match="NaN"):
            searcher.search(np.full((1, 32), np.nan, np.float32), 5)
        assert searcher.search(vectors[0].astype(np.float64), 1)[1].shape == (1, 1)

    ids, ivf_vectors = synth.random_ids(2_000), synth.clustered(2_000, 8)
    ivf = store.load(
        store.build(ids, ivf_vectors, model_version="m1", n_shards=1, flat_threshold=100)
    )
    with ShardedSearcher(ivf) as searcher:
        for nprobe in (0, ivf.nlist + 1):
            with pytest.raises(ValueError, match=f"nprobe must be from 1 to nlist={ivf.nlist}"):
                searcher.search(ivf_vectors[:1], 5, nprobe=nprobe)


def test_low_latency_mode_returns_the_same_results(store, synth):
    ids, vectors = synth.random_ids(4_000), synth.clustered(4_000, 16)
    loaded = store.load(
        store.build(ids, vectors, model_version="m1", n_shards=1, flat_threshold=100)
    )
    queries = synth.clustered(30, 16, seed=2)
    with ShardedSearcher(loaded) as searcher:
        expected = searcher.search(queries, 5)
    with ShardedSearcher(loaded, omp_threads=2, low_latency=True) as searcher:
        scores, found = searcher.search(queries, 5)
        single = np.vstack([searcher.search(q, 5)[1] for q in queries])
    assert (found == expected[1]).all() and (single == expected[1]).all()
    np.testing.assert_allclose(scores, expected[0], rtol=1e-5)


def exact_within(vectors, ids, queries, within, k):
    """Ground truth of a restricted search: brute force over the members only."""
    rows = np.flatnonzero(np.isin(ids, within))
    return exact_topk_rows(vectors[rows], ids[rows], queries, min(k, len(rows)))


def exact_topk_rows(base, ids, queries, k):
    scores = queries @ base.T
    order = np.argsort(-scores, axis=1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), ids[order]


# 'auto' options that make each kind it can pick from 10,000 vectors a shard; the
# graph variants put an HNSW graph over the centroids (IVF256_HNSW32).
AUTO_PICKS = {
    "flat": {},
    "ivf_sq": {"flat_threshold": 1_000},
    "ivf_pq": {"flat_threshold": 1_000, "pq_threshold": 5_000},
    "ivf_sq_hnsw": {"flat_threshold": 1_000, "hnsw_nlist": 64},
    "ivf_pq_hnsw": {"flat_threshold": 1_000, "pq_threshold": 5_000, "hnsw_nlist": 64},
}


@pytest.mark.parametrize(("kind", "members"), [
    ("ivf_sq", 1), ("ivf_sq", 200), ("ivf_sq", 12_000), ("flat", 1), ("ivf_pq", 30),
    ("ivf_pq_hnsw", 1), ("ivf_pq_hnsw", 30), ("ivf_sq_hnsw", 1), ("ivf_sq_hnsw", 200),
])
def test_a_search_within_a_set_of_ids_finds_exactly_its_members(store, synth, kind, members):
    """A filter restricts faiss itself: one member in 20,000, far from the query, is
    found (an unrestricted IVF search at its default nprobe never probes its list);
    a small set is searched exactly, also where an HNSW graph (approximate even when
    asked for every list) picks the lists; a large one probes lists by the set's share."""
    n = 20_000
    pq = kind.startswith("ivf_pq")
    ids, points = synth.random_ids(n), synth.clustered(n + 20, 8 if pq else 32)
    vectors, queries = points[:n], points[n:]
    loaded = store.load(store.build(ids, vectors, model_version="m1", n_shards=2,
                                    **AUTO_PICKS[kind]))
    assert loaded.manifest.index_type == kind.removesuffix("_hnsw")
    assert ("_HNSW32," in loaded.manifest.factory) == kind.endswith("_hnsw")
    rng = np.random.default_rng(3)
    if members == 1:  # the vector least like the first query
        within = ids[[int(np.argmin(vectors @ queries[0]))]]
    else:
        within = rng.choice(ids, members, replace=False)
    with ShardedSearcher(loaded) as searcher:
        scores, found = searcher.search(queries, 10, within=within)
        plain = searcher.search(queries, 10)[1]
    assert np.isin(found[found >= 0], within).all()
    truth_scores, truth = exact_within(vectors, ids, queries, within, 10)
    if members == 1:
        assert (found[:, 0] == within[0]).all() and (found[:, 1:] == -1).all()
        assert within[0] not in plain[0]
    elif pq:  # every member is scored, on its codes: the set is complete
        assert synth.recall_at_k(found, truth) >= 0.6
    elif members <= 10_000:  # every list probed, every member scored on half floats
        assert synth.recall_at_k(found, truth) >= 0.98  # only near-ties may swap
        np.testing.assert_allclose(scores, truth_scores, atol=2e-3)
    else:  # 60% of the vectors: the default nprobe, scaled by the share
        assert synth.recall_at_k(found, truth) >= 0.9


def test_a_search_within_no_ids_finds_nothing(flat, synth):
    _, _, sharded, _ = flat
    with ShardedSearcher(sharded) as searcher:
        scores, found = searcher.search(synth.clustered(2, 32, seed=4), 5,
                                        within=np.array([], dtype=np.int64))
    assert (found == -1).all() and np.isneginf(scores).all()
