"""Synthetic, clustered, L2-normalised vectors, a fresh index store per test, and a
standard data set with a builder that makes it the current version."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from indexer.index.store import IndexStore


def clustered(n: int, dim: int, *, clusters: int = 50, spread: float = 0.6, seed: int = 0):
    """Points around random unit centres (like embeddings of product classes), unit length."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    faiss.normalize_L2(centres)
    labels = rng.integers(0, clusters, n)
    noise = rng.standard_normal((n, dim)).astype(np.float32) * np.float32(spread / np.sqrt(dim))
    points = centres[labels] + noise
    faiss.normalize_L2(points)
    return points


def random_ids(n: int, *, seed: int = 0) -> np.ndarray:
    """Unique non-negative 63-bit ids, like vector ids derived from sha256 digests."""
    rng = np.random.default_rng(seed + 1000)
    ids = np.unique(rng.integers(0, 2**63 - 1, size=n + n // 10 + 10, dtype=np.int64))
    rng.shuffle(ids)
    return ids[:n]


def exact_topk(base: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int):
    """Ground truth by brute force inner product."""
    scores, rows = faiss.knn(queries, base, k, metric=faiss.METRIC_INNER_PRODUCT)
    return scores, ids[rows]


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of the exact top-k found in the approximate top-k."""
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


@pytest.fixture
def store(tmp_path) -> IndexStore:
    return IndexStore(tmp_path / "index")


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    """2,000 ids and clustered vectors of dimension 16 (``DIM`` of the tests that use it)."""
    return random_ids(2_000), clustered(2_000, 16)


@pytest.fixture
def built(store):
    """Build ``(ids, vectors)`` into ``store`` as model m1 and make it current; 3 shards
    unless ``n_shards`` says otherwise. Returns the new version."""

    def build(data, **kwargs) -> str:
        ids, vectors = data
        kwargs.setdefault("n_shards", 3)
        return store.build(ids, vectors, model_version="m1", activate=True, **kwargs)

    return build


class Synthetic:
    """The helpers above as a fixture, so test modules need not import conftest."""

    clustered = staticmethod(clustered)
    random_ids = staticmethod(random_ids)
    exact_topk = staticmethod(exact_topk)
    recall_at_k = staticmethod(recall_at_k)


@pytest.fixture
def synth() -> type[Synthetic]:
    return Synthetic
