"""Our retrieval metrics agree with pytorch-metric-learning's on the same embeddings."""

import numpy as np
import pytest
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

from indexer.model.evaluate import (
    neighbours_excluding_self,
    recall_and_map_at_r,
    retrieval_metrics,
)


def clustered_embeddings(n_classes=12, per_class=15, dim=32, spread=0.9, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim))
    sizes = rng.integers(2, per_class + 1, size=n_classes)  # uneven classes, R varies
    labels = np.repeat(np.arange(n_classes), sizes)
    vectors = centres[labels] + spread * rng.normal(size=(len(labels), dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32), labels


def test_metrics_match_pytorch_metric_learning():
    vectors, labels = clustered_embeddings()
    ours = retrieval_metrics(vectors, labels)

    calculator = AccuracyCalculator(
        include=("precision_at_1", "mean_average_precision_at_r", "r_precision"),
        k="max_bin_count",
    )
    tensor, label_tensor = torch.from_numpy(vectors), torch.from_numpy(labels)
    theirs = calculator.get_accuracy(tensor, label_tensor, tensor, label_tensor, True)

    assert ours.recall_at_1 == pytest.approx(100 * theirs["precision_at_1"], abs=1e-3)
    assert ours.map_at_r == pytest.approx(100 * theirs["mean_average_precision_at_r"], abs=1e-3)
    assert ours.r_precision == pytest.approx(100 * theirs["r_precision"], abs=1e-3)
    # Not trivially perfect or zero, or the comparison would prove little.
    assert 20 < ours.map_at_r < 95


def test_nmi_is_high_for_separated_clusters_and_low_for_noise():
    vectors, labels = clustered_embeddings(spread=0.05)
    assert retrieval_metrics(vectors, labels).nmi > 95
    shuffled = np.random.default_rng(1).permutation(labels)
    assert retrieval_metrics(vectors, shuffled).nmi < 60


def test_recall_grows_with_k():
    vectors, labels = clustered_embeddings(spread=1.5)
    metrics = retrieval_metrics(vectors, labels)
    assert metrics.recall_at_1 <= metrics.recall_at_2 <= metrics.recall_at_4 <= metrics.recall_at_8


def test_self_is_excluded_even_with_duplicate_vectors():
    vectors = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)
    found = neighbours_excluding_self(vectors, 2)
    assert all(i not in row for i, row in enumerate(found))


@pytest.mark.parametrize(
    ("labels", "message"),
    [([0, 0, 0, 0], "at least two classes"), ([0, 0, 1, 2], "single-image classes: 1, 2")],
)
def test_unevaluable_labels_are_refused(labels, message):
    vectors = np.eye(4, dtype=np.float32)
    with pytest.raises(ValueError, match=message):
        retrieval_metrics(vectors, np.array(labels))


def test_validation_metrics_agree_with_the_evaluation_protocol():
    rng = np.random.default_rng(0)
    labels = np.repeat([f"c{i}" for i in range(6)], [5, 8, 3, 6, 4, 9])
    centres = rng.normal(size=(6, 16))
    _, ids = np.unique(labels, return_inverse=True)
    vectors = centres[ids] + rng.normal(scale=1.2, size=(len(labels), 16))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    ours = recall_and_map_at_r(vectors, labels)
    reference = retrieval_metrics(vectors, labels)
    assert 0 < reference.map_at_r < 100
    assert ours == {"recall_at_1": pytest.approx(reference.recall_at_1),
                    "map_at_r": pytest.approx(reference.map_at_r)}
