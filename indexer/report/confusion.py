"""Which classes the embedding mixes up, and example photos of each mix-up.

The measure follows MAP@R and R-Precision: a photo of class A with R other photos
of its class should find them as its R nearest neighbours. ``rate[A, B]`` is the
share of those R places that photos of class B took, averaged over A's photos, so
a class's row sums to 1 - its R-Precision: the rates split what the class lost,
class by class. A pair's confusion is the mean of its two directions,
``(rate[A, B] + rate[B, A]) / 2``, so a small class swamped by a big one counts as
much as the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from indexer.model.evaluate import Ranking


@dataclass(frozen=True)
class ConfusedPair:
    """Two classes (sorted by name) and how much of each one's top-R the other took."""

    first: str
    second: str
    first_to_second: float  # rate[first, second] in [0, 1]
    second_to_first: float

    @property
    def confusion(self) -> float:
        return (self.first_to_second + self.second_to_first) / 2

    def as_dict(self) -> dict:
        return {"first": self.first, "second": self.second, "confusion": self.confusion,
                "first_to_second": self.first_to_second,
                "second_to_first": self.second_to_first}


@dataclass(frozen=True)
class ExamplePair:
    """A photo of one class beside the most similar photo of the other (row numbers)."""

    row: int  # of the pair's first class
    other_row: int  # of its second class
    similarity: float  # inner product of the two vectors (cosine: they are normalised)
    own_best: float  # the row's similarity to the nearest other photo of its own class
    other_own_best: float  # the same for other_row


def confusion_rates(ranking: Ranking) -> np.ndarray:
    """``rate[a, b]`` [classes, classes]: the mean share of a's photos' top-R that is class b.

    The diagonal is each class's R-Precision (as a fraction).
    """
    n, depth = ranking.neighbours.shape
    within_r = np.arange(depth)[None, :] < ranking.relevant_counts[:, None]
    query_class = np.broadcast_to(ranking.label_ids[:, None], (n, depth))[within_r]
    found_class = ranking.label_ids[ranking.neighbours][within_r]
    weight = np.broadcast_to(1.0 / ranking.relevant_counts[:, None], (n, depth))[within_r]
    k = ranking.classes
    rates = np.zeros((k, k), dtype=np.float64)
    np.add.at(rates, (query_class, found_class), weight)
    sizes = np.bincount(ranking.label_ids, minlength=k).astype(np.float64)
    return rates / sizes[:, None]


def confused_pairs(ranking: Ranking, top: int) -> list[ConfusedPair]:
    """The ``top`` pairs with the highest confusion, highest first; pairs never mixed are left
    out."""
    rates = confusion_rates(ranking)
    names = [str(name) for name in ranking.class_names]
    pairs = []
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            if rates[a, b] > 0 or rates[b, a] > 0:
                pairs.append(ConfusedPair(names[a], names[b], float(rates[a, b]),
                                          float(rates[b, a])))
    pairs.sort(key=lambda p: (-p.confusion, p.first, p.second))
    return pairs[:top]


def most_confused_with(ranking: Ranking) -> dict[str, tuple[str, float]]:
    """For each class, the other class that took most of its top-R, and that rate."""
    rates = confusion_rates(ranking)
    np.fill_diagonal(rates, -1.0)
    names = [str(name) for name in ranking.class_names]
    found = {}
    for a, name in enumerate(names):
        b = int(rates[a].argmax())
        if rates[a, b] > 0:
            found[name] = (names[b], float(rates[a, b]))
    return found


def example_pairs(
    vectors: np.ndarray, labels: np.ndarray, first: str, second: str, count: int
) -> list[ExamplePair]:
    """Up to ``count`` of the most similar (first-class photo, second-class photo) pairs.

    Each photo appears in at most one example, so three examples show six photos
    rather than one photo of a class three times. ``own_best`` tells whether the
    other class's photo came before every photo of the query's own class.
    """
    labels = np.asarray(labels)
    rows = np.flatnonzero(labels == first)
    other_rows = np.flatnonzero(labels == second)
    similarity = vectors[rows] @ vectors[other_rows].T
    own_best = _nearest_own(vectors, rows)
    other_own_best = _nearest_own(vectors, other_rows)
    examples: list[ExamplePair] = []
    used_rows, used_other = set(), set()
    for flat in np.argsort(-similarity, axis=None, kind="stable"):
        i, j = np.unravel_index(flat, similarity.shape)
        if i in used_rows or j in used_other:
            continue
        used_rows.add(i)
        used_other.add(j)
        examples.append(ExamplePair(int(rows[i]), int(other_rows[j]), float(similarity[i, j]),
                                    float(own_best[i]), float(other_own_best[j])))
        if len(examples) == count:
            break
    return examples


def _nearest_own(vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Each row's similarity to the nearest other row of the same set."""
    within = vectors[rows] @ vectors[rows].T
    np.fill_diagonal(within, -np.inf)
    return within.max(axis=1)
