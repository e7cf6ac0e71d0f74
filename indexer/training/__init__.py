"""Similarity learning: train the embedding on a shop's own labelled photos.

* :mod:`~indexer.training.data`: the class-disjoint split, decode checks, fingerprint.
* :mod:`~indexer.training.losses`: the loss registry (pytorch-metric-learning).
* :mod:`~indexer.training.sampler`: M-per-class batches, reproducible per epoch.
* :mod:`~indexer.training.inputs`, :mod:`~indexer.training.augment`: what each step sees.
* :mod:`~indexer.training.trainer`: the loop, validation and checkpoints.
* :mod:`~indexer.training.run`: ``train_model``, data to model directory.

Names are re-exported lazily, as in :mod:`indexer.model`: the command line reads the
configuration's defaults without importing torch.
"""

from __future__ import annotations

from indexer.lazy import lazy_exports

_EXPORTS = {  # module: the names it exports here
    "config": ("TrainConfig", "TrainConfigError"),
    "losses": ("LOSSES", "UnknownLoss"),
    "run": ("TrainOutcome", "train_model"),
}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
