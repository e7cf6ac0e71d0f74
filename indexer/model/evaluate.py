"""Retrieval quality of an embedding: Recall@K, MAP@R, R-Precision and NMI.

The protocol is the one of CUB-200 / Stanford Online Products (and of
pytorch-metric-learning's ``AccuracyCalculator``): every image queries all the
*other* images of the evaluation set, and a result is relevant when it has the
query's label. MAP@R follows Musgrave et al., "A Metric Learning Reality Check"
(2020): with R the number of other images of the query's class, the average of
precision@i over the relevant positions i <= R, divided by R.

Search is exact (faiss inner product on L2-normalised vectors). Every metric of the
project comes from here: ``lookalike evaluate``, a training run's test classes
(:func:`evaluate_embedder`) and the trainer's per-epoch validation
(:func:`recall_and_map_at_r`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import faiss
import numpy as np

if TYPE_CHECKING:  # the metrics need no torch; only evaluate_embedder's caller does
    from indexer.model.embed import Embedder

log = logging.getLogger(__name__)

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


def rank(vectors: np.ndarray, labels: np.ndarray, min_depth: int = 1) -> Ranking:
    """Every row's nearest other rows and how each query scores on them.

    The one ranking behind every metric here; the quality report
    (:mod:`indexer.report`) reads its per-query scores and neighbour lists.
    """
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
    depth = min(int(max(relevant_counts.max(), min_depth)), len(vectors) - 1)
    found = neighbours_excluding_self(vectors, depth)
    hits = label_ids[found] == label_ids[:, None]  # [n, depth] relevance of each position
    positions = np.arange(1, depth + 1)
    hits_r = hits & (positions[None, :] <= relevant_counts[:, None])
    precision_at_i = np.cumsum(hits_r, axis=1) / positions[None, :]
    return Ranking(
        class_names=classes,
        label_ids=label_ids,
        relevant_counts=relevant_counts,
        neighbours=found,
        hits=hits,
        average_precision_at_r=(precision_at_i * hits_r).sum(axis=1) / relevant_counts,
        precision_at_r=hits_r.sum(axis=1) / relevant_counts,
    )


@dataclass(frozen=True)
class Ranking:
    """Per query (row): its class, its ``R``, its ranked neighbours and its scores in [0, 1].

    ``neighbours`` holds at least ``R`` entries for every query (fewer only when the
    set has no more rows); the metrics are the means of the per-query scores.
    """

    class_names: np.ndarray  # the sorted distinct labels; label_ids index into it
    label_ids: np.ndarray  # [n]
    relevant_counts: np.ndarray  # [n] R: the other images of the query's class
    neighbours: np.ndarray  # [n, depth] row numbers, nearest first, the query left out
    hits: np.ndarray  # [n, depth] bool: is the i-th neighbour of the query's class
    average_precision_at_r: np.ndarray  # [n] each query's AP@R; MAP@R is their mean
    precision_at_r: np.ndarray  # [n] each query's R-precision

    @property
    def classes(self) -> int:
        return len(self.class_names)

    @property
    def map_at_r(self) -> float:
        return 100.0 * float(self.average_precision_at_r.mean())

    @property
    def r_precision(self) -> float:
        return 100.0 * float(self.precision_at_r.mean())

    def recall_at(self, k: int) -> float:
        return 100.0 * float(self.hits[:, :k].any(axis=1).mean())


def retrieval_metrics(
    vectors: np.ndarray, labels: np.ndarray, *, nmi_seed: int = 0
) -> RetrievalMetrics:
    """Metrics for every row querying all other rows; ``labels`` are ints or strings."""
    ranking = rank(vectors, labels, max(RECALL_KS))
    return RetrievalMetrics(
        recall_at_1=ranking.recall_at(1),
        recall_at_2=ranking.recall_at(2),
        recall_at_4=ranking.recall_at(4),
        recall_at_8=ranking.recall_at(8),
        map_at_r=ranking.map_at_r,
        r_precision=ranking.r_precision,
        nmi=100.0 * clustering_nmi(vectors, ranking.label_ids, ranking.classes, seed=nmi_seed),
        queries=len(vectors),
        classes=ranking.classes,
    )


def recall_and_map_at_r(vectors: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Recall@1 and MAP@R only, as the trainer's validation reads them after each epoch.

    The same ranking as :func:`retrieval_metrics`, without the clustering for NMI.
    """
    ranking = rank(vectors, labels, 1)
    return {"recall_at_1": ranking.recall_at(1), "map_at_r": ranking.map_at_r}


def evaluate_embedder(embedder: Embedder, paths: Sequence[Path], labels: Sequence[str], *,
                      progress: bool = False) -> LabelledVectors:
    """Embed labelled image files exactly as the index would and score them.

    Images the embedder cannot decode are left out and listed in ``skipped``.
    """
    vectors = np.zeros((len(paths), embedder.dim), dtype=np.float32)
    ok = np.zeros(len(paths), dtype=bool)
    skipped = []
    for batch in embedder.embed_paths(paths, progress=progress):
        vectors[batch.indices] = batch.vectors
        ok[batch.indices] = True
        for position, reason in batch.failures:
            skipped.append((str(paths[position]), reason))
            log.warning("skipped %s: %s", paths[position], reason)
    kept = np.asarray(labels)[ok]
    kept_paths = [Path(path) for path, decoded in zip(paths, ok, strict=True) if decoded]
    return LabelledVectors(retrieval_metrics(vectors[ok], kept), vectors[ok], kept, skipped,
                           kept_paths)


@dataclass
class LabelledVectors:
    """What :func:`evaluate_embedder` measured, and on which vectors."""

    metrics: RetrievalMetrics
    vectors: np.ndarray  # float32 (n, dim): the images that decoded
    labels: np.ndarray  # their labels
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    paths: list[Path] = field(default_factory=list)  # the file of each vector, row by row


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
