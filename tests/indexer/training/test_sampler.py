"""M-per-class batches: m images of each of batch_size/m distinct classes, replayable."""

import numpy as np
import pytest

from indexer.training.sampler import MPerClassBatches

LABELS = np.repeat(np.arange(10), [9, 8, 7, 6, 5, 4, 4, 4, 3, 1])


def test_batches_hold_m_images_of_distinct_classes():
    sampler = MPerClassBatches(LABELS, m=2, batch_size=8, seed=3)
    batches = sampler.epoch(0)
    assert batches
    for batch in batches:
        classes, counts = np.unique(LABELS[batch], return_counts=True)
        assert len(classes) == 4 and set(counts) == {2}
    # Every image of a class with at least m images appears at most once per epoch...
    seen = np.concatenate(batches)
    big = np.flatnonzero(LABELS != 9)
    assert len(set(seen[np.isin(seen, big)])) == np.isin(seen, big).sum()
    # ...and most of them appear.
    assert np.isin(big, seen).mean() > 0.8


def test_the_same_seed_and_epoch_give_the_same_batches():
    a = MPerClassBatches(LABELS, m=2, batch_size=8, seed=3)
    b = MPerClassBatches(LABELS, m=2, batch_size=8, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a.epoch(5), b.epoch(5), strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a.epoch(5), a.epoch(6), strict=False))
    other_seed = MPerClassBatches(LABELS, m=2, batch_size=8, seed=4)
    assert not all(
        np.array_equal(x, y) for x, y in zip(a.epoch(5), other_seed.epoch(5), strict=False)
    )


def test_a_class_smaller_than_m_is_drawn_with_replacement():
    labels = np.array([0, 0, 0, 0, 1])
    batches = MPerClassBatches(labels, m=4, batch_size=8, seed=0).epoch(0)
    assert len(batches) == 1
    assert sorted(labels[batches[0]]) == [0, 0, 0, 0, 1, 1, 1, 1]


@pytest.mark.parametrize(("m", "batch", "labels", "message"), [
    (1, 8, LABELS, "at least 2"),
    (3, 8, LABELS, "multiple of m"),
    (4, 4, LABELS, "at least two classes"),
    (2, 8, np.zeros(6), "at least two classes"),
])
def test_impossible_batches_are_refused(m, batch, labels, message):
    with pytest.raises(ValueError, match=message):
        MPerClassBatches(labels, m=m, batch_size=batch, seed=0)
