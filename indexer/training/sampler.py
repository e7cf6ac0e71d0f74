"""M-per-class batches: every batch holds ``m`` images of each of ``batch_size // m`` classes.

Pair, triplet and proxy losses all need positives in the batch; uniform sampling over
~40 classes rarely gives them. Unlike pytorch-metric-learning's ``MPerClassSampler``
(which draws from numpy's global random state), each epoch's order here is a pure
function of (seed, epoch), so a resumed run replays exactly the batches an
uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class MPerClassBatches:
    """Batches of dataset positions, one epoch at a time.

    Each epoch visits every image about once: a class's images are shuffled and cut
    into groups of ``m`` (a class with fewer than ``m`` images gives one group drawn
    with replacement), and groups of distinct classes are dealt into batches. Groups
    that cannot fill a batch of distinct classes wait for the next epoch's shuffle.
    """

    def __init__(self, labels: Sequence[int], m: int, batch_size: int, seed: int) -> None:
        if m < 2:
            raise ValueError(f"m per class must be at least 2 to give positives; got {m}")
        if batch_size < 2 * m or batch_size % m:
            raise ValueError(
                f"batch size must be a multiple of m per class ({m}) and hold at least two "
                f"classes; got {batch_size}"
            )
        labels = np.asarray(labels)
        self.by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
        if len(self.by_class) < 2:
            raise ValueError("M-per-class batches need at least two classes")
        self.m = m
        self.classes_per_batch = min(batch_size // m, len(self.by_class))
        self.seed = seed

    def epoch(self, epoch: int) -> list[np.ndarray]:
        """The batches of ``epoch``: the same for the same (seed, epoch), on any machine."""
        rng = np.random.default_rng([self.seed, epoch])
        groups: list[tuple[int, np.ndarray]] = []
        for label, members in enumerate(self.by_class):
            if len(members) < self.m:
                groups.append((label, rng.choice(members, self.m, replace=True)))
                continue
            shuffled = rng.permutation(members)
            groups.extend(
                (label, shuffled[i : i + self.m])
                for i in range(0, len(shuffled) - self.m + 1, self.m)
            )
        remaining = [groups[i] for i in rng.permutation(len(groups))]
        batches = []
        while True:
            batch, seen, rest = [], set(), []
            for label, group in remaining:
                if len(batch) < self.classes_per_batch and label not in seen:
                    batch.append(group)
                    seen.add(label)
                else:
                    rest.append((label, group))
            if len(batch) < self.classes_per_batch:
                return batches
            batches.append(np.concatenate(batch))
            remaining = rest
