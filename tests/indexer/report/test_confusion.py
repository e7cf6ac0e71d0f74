"""indexer.report.confusion: which classes take each other's top-R places."""

import numpy as np
import pytest

from indexer.model.evaluate import rank
from indexer.report.confusion import (
    confused_pairs,
    confusion_rates,
    example_pairs,
    most_confused_with,
)


def normalised(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def overlapping_classes(seed: int = 0):
    """Four classes of 10 in 8-d: 'milk' and 'cream' share one centre, the others stand apart."""
    rng = np.random.default_rng(seed)
    centres = {"milk": 0, "cream": 0, "apple": 1, "leek": 2}
    axes = np.eye(8) * 10
    labels = np.repeat(list(centres), 10)
    vectors = np.stack([axes[centres[label]] for label in labels])
    return normalised(vectors + rng.normal(size=vectors.shape)), labels


def test_rates_split_what_each_class_lost_from_its_r_precision():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(5), [3, 6, 9, 4, 7])
    vectors = normalised(rng.normal(size=(5, 12))[labels] + rng.normal(size=(len(labels), 12)))
    ranking = rank(vectors, labels)
    rates = confusion_rates(ranking)
    assert rates.sum(axis=1) == pytest.approx(np.ones(5))
    for number in range(5):
        mine = ranking.label_ids == number
        assert rates[number, number] == pytest.approx(ranking.precision_at_r[mine].mean())


def test_a_hand_made_case():
    # On the unit circle: a at 0, 12 and 30 degrees, b at 20 and 90 (see test_per_class).
    radians = np.radians([0, 12, 20, 30, 90])
    vectors = np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)
    ranking = rank(vectors, np.array(["a", "a", "b", "a", "b"]))
    # Each photo of a has b@20 among its 2 nearest: half its places; b's single place goes to a.
    assert confusion_rates(ranking) == pytest.approx(np.array([[0.5, 0.5], [1.0, 0.0]]))
    (pair,) = confused_pairs(ranking, top=5)
    assert (pair.first, pair.second) == ("a", "b")
    assert pair.confusion == pytest.approx(0.75)
    assert most_confused_with(ranking) == {"a": ("b", 0.5), "b": ("a", 1.0)}


def test_the_confused_pair_is_exactly_the_two_overlapping_classes():
    vectors, labels = overlapping_classes()
    pairs = confused_pairs(rank(vectors, labels), top=5)
    assert [(p.first, p.second) for p in pairs] == [("cream", "milk")]
    # Sharing one centre, each takes about half of the other's places.
    assert 0.3 < pairs[0].first_to_second < 0.7 and 0.3 < pairs[0].second_to_first < 0.7
    assert set(most_confused_with(rank(vectors, labels))) == {"cream", "milk"}


def test_examples_are_the_most_similar_photos_across_the_pair_each_shown_once():
    vectors, labels = overlapping_classes()
    shown = example_pairs(vectors, labels, "cream", "milk", count=3)
    assert len(shown) == 3
    cream, milk = np.flatnonzero(labels == "cream"), np.flatnonzero(labels == "milk")
    across = vectors[cream] @ vectors[milk].T
    assert shown[0].similarity == pytest.approx(across.max())
    assert [e.similarity for e in shown] == sorted((e.similarity for e in shown), reverse=True)
    assert len({e.row for e in shown}) == 3 and len({e.other_row for e in shown}) == 3
    for example in shown:
        assert labels[example.row] == "cream" and labels[example.other_row] == "milk"
        across_pair = vectors[example.row] @ vectors[example.other_row]
        assert example.similarity == pytest.approx(across_pair)
        own = vectors[cream] @ vectors[example.row]
        assert example.own_best == pytest.approx(np.sort(own)[-2])  # its nearest other cream
    # More examples asked for than photos: each photo still only once.
    assert len(example_pairs(vectors, labels, "cream", "milk", count=50)) == 10
