"""The embedding model: backbone, weights, model directories and batched embedding.

Names are re-exported lazily so that ``import indexer.model.evaluate`` (or anything
else in this package) does not pay for importing timm until a model is needed.

* :mod:`~indexer.model.weights`: packaged ImageNet weights, checkpoint mapping.
* :mod:`~indexer.model.backbone`: ``create_backbone(name, checkpoint)``.
* :mod:`~indexer.model.card`: ``card.json``.
* :mod:`~indexer.model.modeldir`: ``EmbeddingModel``, ``load_model``, ``save_model_dir``.
* :mod:`~indexer.model.embed`: ``Embedder``, ``EmbeddedBatch``.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

# torch's OpenMP runtime (libgomp on Linux) spin-waits between parallel regions by
# default, burning CPU that the image loader or any other process on the machine needs.
# On the shared 2-vCPU development machine, passive waiting cut CPU time per image by a
# third (~100 -> ~60 ms) and gave 1.3-1.9x the forward throughput while other jobs ran
# (idle, the difference was within the noise). The API, workers and beat often share
# one machine, so passive is the safer default. It only works if set before torch
# loads libgomp, which in this code base happens below this package; an explicit
# OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_EXPORTS = {
    "create_backbone": "backbone",
    "UnknownBackbone": "backbone",
    "WeightsError": "weights",
    "PACKAGED_WEIGHTS": "weights",
    "ModelCard": "card",
    "EmbeddingModel": "modeldir",
    "ModelNotFound": "modeldir",
    "load_model": "modeldir",
    "load_model_dir": "modeldir",
    "save_model_dir": "modeldir",
    "Embedder": "embed",
    "EmbeddedBatch": "embed",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
