"""Vectors in, a 2-D layout and cluster numbers out: PCA, t-SNE (openTSNE), faiss k-means.

PCA to at most 50 dimensions first, as openTSNE's and scikit-learn's guides
advise: t-SNE's neighbour search is then cheap, and the dropped components are
mostly noise. openTSNE's FFT-accelerated gradient (Linderman et al., 2019), which
it uses from 10,000 points on, grows linearly with the points: 50,000 took about
3 minutes on two busy cores; below that openTSNE's Barnes-Hut was still 2.3x
faster than scikit-learn's at 5,000 points (``tests/bench/bench_map.py``).

k-means runs on the PCA vectors, not on the 2-D layout: t-SNE distorts distances
between groups, so clusters found in the layout would only echo its artefacts.

Small samples work too: the perplexity is lowered below ``(n - 1) / 3`` (t-SNE
needs that many neighbours per point), and one or two points are laid out
without t-SNE at all.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass

import faiss
import numpy as np

log = logging.getLogger(__name__)

PCA_DIMS = 50
MAX_AUTO_CLUSTERS = 50
KMEANS_ITERATIONS = 25
FFT_FROM = 10_000  # openTSNE's own switch from Barnes-Hut to FFT gradients
SHARED_FROM = 2_000  # points from which t-SNE runs on every core


@dataclass(frozen=True)
class Layout:
    """``xy``: float32 [n, 2] in [0, 1]; ``clusters``: int [n] in [0, k); ``method``: how."""

    xy: np.ndarray
    clusters: np.ndarray
    k: int
    method: str


def auto_clusters(n: int) -> int:
    """About sqrt(n / 2) clusters (a common rule of thumb), at least 1, at most 50."""
    if n <= 0:
        return 0
    return max(1, min(MAX_AUTO_CLUSTERS, round(math.sqrt(n / 2))))


def effective_perplexity(perplexity: float, n: int) -> float:
    """The perplexity t-SNE can use with ``n`` points: below ``(n - 1) / 3``."""
    return float(min(perplexity, max((n - 1) / 3 - 1e-3, 0.1)))


def pca(vectors: np.ndarray, dims: int = PCA_DIMS) -> np.ndarray:
    """Project onto the top ``dims`` principal components (faiss PCAMatrix)."""
    n, d = vectors.shape
    out = min(dims, d, max(n - 1, 1))
    if n < 2 or out >= d:
        return vectors - vectors.mean(axis=0, keepdims=True)
    matrix = faiss.PCAMatrix(d, out)
    matrix.train(vectors)
    return matrix.apply(vectors)


def kmeans(points: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, int]:
    """Cluster numbers of ``points`` from faiss k-means; ``k`` is capped at ``n``."""
    n = len(points)
    k = max(1, min(k, n))
    if k == 1:
        return np.zeros(n, dtype=np.int64), 1
    km = faiss.Kmeans(
        points.shape[1], k, niter=KMEANS_ITERATIONS, seed=seed, verbose=False,
        min_points_per_centroid=1, max_points_per_centroid=1_000_000,
    )  # fmt: skip
    km.train(np.ascontiguousarray(points, dtype=np.float32))
    _, assigned = km.index.search(np.ascontiguousarray(points, dtype=np.float32), 1)
    return assigned[:, 0].astype(np.int64), k


def default_jobs(n: int) -> int:
    """Threads for t-SNE of ``n`` points.

    Below :data:`SHARED_FROM` points one thread: the work per iteration is too
    small to share, and on a busy machine threads waiting for each other made 100
    points take 10 s instead of 0.3 s. From there every core (5,000 points,
    Barnes-Hut, 2 cores: 21 s against 29 s on one thread).
    """
    return 1 if n < SHARED_FROM else (os.cpu_count() or 1)


def tsne(points: np.ndarray, perplexity: float, seed: int, n_jobs: int | None = None):
    """openTSNE with PCA initialisation; returns float64 [n, 2]."""
    from openTSNE import TSNE  # heavy import, only where a map is computed

    model = TSNE(
        n_components=2,
        perplexity=perplexity,
        initialization="pca",
        random_state=seed,
        negative_gradient_method="bh" if len(points) < FFT_FROM else "fft",
        n_jobs=n_jobs or default_jobs(len(points)),
        verbose=False,
    )
    return np.asarray(model.fit(np.ascontiguousarray(points, dtype=np.float64)))


def normalise(xy: np.ndarray) -> np.ndarray:
    """Scale into [0, 1] keeping the aspect ratio; the shorter side is centred."""
    xy = np.asarray(xy, dtype=np.float64)
    if len(xy) == 0:
        return np.zeros((0, 2), dtype=np.float32)
    low, high = xy.min(axis=0), xy.max(axis=0)
    span = float((high - low).max())
    if span <= 0 or not math.isfinite(span):
        return np.full((len(xy), 2), 0.5, dtype=np.float32)
    scaled = (xy - low) / span
    scaled += (1.0 - scaled.max(axis=0)) / 2  # centre the shorter side
    return np.clip(scaled, 0.0, 1.0).astype(np.float32)


def compute_layout(
    vectors: np.ndarray,
    *,
    clusters: int = 0,
    perplexity: float = 30.0,
    seed: int = 0,
    n_jobs: int | None = None,
) -> Layout:
    """Lay ``vectors`` [n, d] out in 2-D and cluster them; deterministic for a seed."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"vectors must be a 2-D array [n, dim], got shape {vectors.shape}")
    if clusters < 0:
        raise ValueError(f"clusters must be >= 0 (0: automatic), got {clusters}")
    if perplexity <= 0:
        raise ValueError(f"perplexity must be > 0, got {perplexity}")
    n = len(vectors)
    if n == 0:
        return Layout(np.zeros((0, 2), np.float32), np.zeros(0, np.int64), 0, "empty")
    reduced = pca(vectors)
    labels, k = kmeans(reduced, clusters or auto_clusters(n), seed)
    if n <= 2:  # nothing for t-SNE to learn: one point in the middle, two side by side
        xy = np.array([[0.5, 0.5]]) if n == 1 else np.array([[0.0, 0.5], [1.0, 0.5]])
        return Layout(xy.astype(np.float32), labels, k, "fixed layout (fewer than 3 points)")
    used = effective_perplexity(perplexity, n)
    xy = tsne(reduced, used, seed, n_jobs)
    gradient = "Barnes-Hut" if n < FFT_FROM else "FFT"
    method = (
        f"t-SNE (openTSNE {gradient}, perplexity {used:g}) on {reduced.shape[1]} PCA "
        "components; "
        f"faiss k-means, k={k}"
    )
    return Layout(normalise(xy), labels, k, method)
