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

import importlib
from typing import Any

_EXPORTS = {
    "TrainConfig": "config",
    "TrainConfigError": "config",
    "LOSSES": "losses",
    "UnknownLoss": "losses",
    "TrainOutcome": "run",
    "train_model": "run",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
