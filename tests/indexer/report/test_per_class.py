"""indexer.report.per_class: each class's Recall@1 and MAP@R, checked by hand."""

import numpy as np
import pytest

from indexer.model.evaluate import rank, retrieval_metrics
from indexer.report.per_class import per_class_scores, size_weighted_mean


def on_circle(*degrees: float) -> np.ndarray:
    radians = np.radians(degrees)
    return np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)


# Five photos on the unit circle (cosine similarity falls with the angle between them):
# a at 0, 12 and 30 degrees, b at 20 and 90. No two distances tie.
VECTORS = on_circle(0, 12, 20, 30, 90)
LABELS = np.array(["a", "a", "b", "a", "b"])


def test_per_class_scores_match_a_hand_computation():
    # a (R = 2): a@0 finds a@12, b@20 -> first right, AP@R = (1/1) / 2 = 0.5
    #            a@12 finds b@20, a@0 -> first wrong, AP@R = (1/2) / 2 = 0.25
    #            a@30 finds b@20, a@12 -> first wrong, AP@R = 0.25
    # b (R = 1): b@20 finds a@12 and b@90 finds a@30 -> both wrong, AP@R = 0
    scores = {s.name: s for s in per_class_scores(rank(VECTORS, LABELS))}
    assert scores["a"].size == 3 and scores["b"].size == 2
    assert scores["a"].recall_at_1 == pytest.approx(100 / 3)
    assert scores["a"].map_at_r == pytest.approx(100 * (0.5 + 0.25 + 0.25) / 3)
    assert scores["a"].r_precision == pytest.approx(50.0)
    assert scores["b"].recall_at_1 == 0 and scores["b"].map_at_r == 0


def test_classes_come_worst_first_and_weigh_back_to_the_overall_metrics():
    scores = per_class_scores(rank(VECTORS, LABELS))
    assert [s.name for s in scores] == ["b", "a"]
    overall = retrieval_metrics(VECTORS, LABELS)
    assert size_weighted_mean(scores, "map_at_r") == pytest.approx(overall.map_at_r) == 20.0
    assert size_weighted_mean(scores, "recall_at_1") == pytest.approx(overall.recall_at_1)
    assert size_weighted_mean(scores, "r_precision") == pytest.approx(overall.r_precision)


def test_on_random_clusters_the_classes_add_up_to_the_overall_figures():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), rng.integers(2, 12, size=6))
    vectors = rng.normal(size=(6, 16))[labels] + 0.8 * rng.normal(size=(len(labels), 16))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    scores = per_class_scores(rank(vectors, labels))
    overall = retrieval_metrics(vectors, labels)
    assert 10 < overall.map_at_r < 95  # neither trivial case
    assert size_weighted_mean(scores, "map_at_r") == pytest.approx(overall.map_at_r)
    assert size_weighted_mean(scores, "recall_at_1") == pytest.approx(overall.recall_at_1)
    assert sorted(s.size for s in scores) == sorted(np.bincount(labels).tolist())
