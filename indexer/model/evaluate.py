"""Retrieval quality of an embedding: Recall@K, MAP@R, R-Precision and NMI.

The protocol is the one of CUB-200 / Stanford Online Products (and of
pytorch-metric-learning's ``AccuracyCalculator``): every image queries all the
*other* images of the evaluation set, and a result is relevant when it has the
query's label. MAP@R follows Musgrave et al., "A Metric Learning Reality Check"
(2020): with R the number of other images of the query's class, the average of
precision@i over the relevant positions i <= R, divided by R.

Search is exact (faiss inner product on L2-normalised vectors).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import faiss
import numpy as np

RECALL_KS = (1, 2, 4, 8)


@dataclass(frozen=True)
class RetrievalMetrics:
    """Each metric in percent, as papers report them."""

    recall_at_1: float
    recall_at_2: float
    recall_at_4: float
    recall_at_8: float
    map_at_r: float
    r_precision: float
    nmi: float
    queries: int
    classes: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)

    def table_rows(self) -> list[tuple[str, str]]:
        """(name, value) rows, e.g. ``("MAP@R", "41.2")``."""
        return [
            ("Recall@1", f"{self.recall_at_1:.1f}"),
            ("Recall@2", f"{self.recall_at_2:.1f}"),
            ("Recall@4", f"{self.recall_at_4:.1f}"),
            ("Recall@8", f"{self.recall_at_8:.1f}"),
            ("MAP@R", f"{self.map_at_r:.1f}"),
            ("R-Precision", f"{self.r_precision:.1f}"),
            ("NMI", f"{self.nmi:.1f}"),
            ("queries", str(self.queries)),
            ("classes", str(self.classes)),
        ]


def neighbours_excluding_self(vectors: np.ndarray, k: int) -> np.ndarray:
    """Indices of each row's ``k`` nearest other rows (exact inner-product search)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    _, found = index.search(vectors, k + 1)
    # Drop each query's own row wherever ties put it; keep the first k others.
    own = found == np.arange(len(vectors))[:, None]
    own[:, -1] |= ~own.any(axis=1)  # no self in the list: drop the last one instead
    return found[~own].reshape(len(vectors), k)


def retrieval_metrics(
    vectors: np.ndarray, labels: np.ndarray, *, nmi_seed: int = 0
) -> RetrievalMetrics:
    """Metrics for every row querying all other rows; ``labels`` are ints or strings."""
    labels = np.asarray(labels)
    if len(vectors) != len(labels):
        raise ValueError(f"{len(vectors)} vectors but {len(labels)} labels")
    classes, label_ids, class_sizes = np.unique(labels, return_inverse=True, return_counts=True)
    if len(classes) < 2:
        raise ValueError("evaluation needs at least two classes")
    relevant_counts = class_sizes[label_ids] - 1  # R for each query
    if (relevant_counts < 1).any():
        lonely = classes[class_sizes < 2]
        raise ValueError(
            f"every class needs at least two images to be evaluated; "
            f"single-image classes: {', '.join(map(str, lonely[:10]))}"
        )

    depth = int(max(relevant_counts.max(), max(RECALL_KS)))
    depth = min(depth, len(vectors) - 1)
    found = neighbours_excluding_self(vectors, depth)
    hits = label_ids[found] == label_ids[:, None]  # [n, depth] relevance of each position

    recall = {k: 100.0 * hits[:, :k].any(axis=1).mean() for k in RECALL_KS}

    positions = np.arange(1, depth + 1)
    within_r = positions[None, :] <= relevant_counts[:, None]
    hits_r = hits & within_r
    precision_at_i = np.cumsum(hits_r, axis=1) / positions[None, :]
    map_at_r = (precision_at_i * hits_r).sum(axis=1) / relevant_counts
    r_precision = hits_r.sum(axis=1) / relevant_counts

    return RetrievalMetrics(
        recall_at_1=recall[1],
        recall_at_2=recall[2],
        recall_at_4=recall[4],
        recall_at_8=recall[8],
        map_at_r=100.0 * float(map_at_r.mean()),
        r_precision=100.0 * float(r_precision.mean()),
        nmi=100.0 * clustering_nmi(vectors, label_ids, len(classes), seed=nmi_seed),
        queries=len(vectors),
        classes=len(classes),
    )


def clustering_nmi(vectors: np.ndarray, label_ids: np.ndarray, n_clusters: int, seed: int) -> float:
    """NMI between labels and a k-means clustering with as many clusters as classes."""
    from sklearn.metrics import normalized_mutual_info_score

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    kmeans = faiss.Kmeans(
        vectors.shape[1], n_clusters, niter=50, nredo=10, seed=seed, spherical=True,
        min_points_per_centroid=1, max_points_per_centroid=100_000,
    )
    kmeans.train(vectors)
    _, assigned = kmeans.index.search(vectors, 1)
    return float(normalized_mutual_info_score(label_ids, assigned[:, 0]))
