"""Recall@1 and MAP@R of each class: the overall metrics, averaged over one class's photos.

The scores come from the ranking every metric of the project uses
(:func:`indexer.model.evaluate.rank`): each photo queries all the *other* photos
of the evaluation set, and R is the number of other photos of its class. A class's
Recall@1 is the share of its photos whose nearest other photo is of the class; its
MAP@R the mean of its photos' AP@R. The overall figures are means over photos, so
they are these per-class figures weighted by class size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from indexer.model.evaluate import Ranking


@dataclass(frozen=True)
class ClassScores:
    """One class's photos as queries; metrics in percent."""

    name: str
    size: int  # photos of the class that were embedded
    recall_at_1: float
    map_at_r: float
    r_precision: float

    def as_dict(self) -> dict:
        return {"name": self.name, "size": self.size, "recall_at_1": self.recall_at_1,
                "map_at_r": self.map_at_r, "r_precision": self.r_precision}


def per_class_scores(ranking: Ranking) -> list[ClassScores]:
    """Scores of every class, worst first (lowest MAP@R, then lowest Recall@1, then name)."""
    scores = []
    for number, name in enumerate(ranking.class_names):
        mine = ranking.label_ids == number
        scores.append(ClassScores(
            name=str(name),
            size=int(mine.sum()),
            recall_at_1=100.0 * float(ranking.hits[mine, 0].mean()),
            map_at_r=100.0 * float(ranking.average_precision_at_r[mine].mean()),
            r_precision=100.0 * float(ranking.precision_at_r[mine].mean()),
        ))  # fmt: skip
    return sorted(scores, key=lambda s: (s.map_at_r, s.recall_at_1, s.name))


def size_weighted_mean(scores: list[ClassScores], metric: str) -> float:
    """The overall metric back from the per-class ones (each class weighs by its photos)."""
    sizes = np.array([s.size for s in scores], dtype=np.float64)
    values = np.array([getattr(s, metric) for s in scores], dtype=np.float64)
    return float((sizes * values).sum() / sizes.sum())
