"""The embedding model: backbone, weights, model directories and batched embedding.

Names are re-exported lazily so that ``import indexer.model.evaluate`` (or anything
else in this package) does not pay for importing timm until a model is needed.

* :mod:`~indexer.model.weights`: packaged ImageNet weights, checkpoint mapping.
* :mod:`~indexer.model.backbone`: ``create_backbone(name, checkpoint)``.
* :mod:`~indexer.model.card`: ``card.json``.
* :mod:`~indexer.model.modeldir`: ``EmbeddingModel``, ``load_model``, ``save_model_dir``.
* :mod:`~indexer.model.device`: device, precision, loader workers, torch threads.
* :mod:`~indexer.model.preprocess`: ``Preprocessor`` (decode, eval transform), ``PixelNormalizer``.
* :mod:`~indexer.model.loading`: loaders that decode ahead of the forward pass.
* :mod:`~indexer.model.embed`: ``Embedder``, ``EmbeddedBatch``.
* :mod:`~indexer.model.evaluate`: every retrieval metric (Recall@K, MAP@R, R-Precision, NMI).
"""

from __future__ import annotations

import os

from indexer.lazy import lazy_exports

# torch's OpenMP runtime (libgomp on Linux) spin-waits between parallel regions by
# default, burning CPU that the image loader or any other process on the machine needs.
# On the shared 2-vCPU development machine, passive waiting cut CPU time per image by a
# third (~100 -> ~60 ms) and gave 1.3-1.9x the forward throughput while other jobs ran
# (idle, the difference was within the noise). The API, workers and beat often share
# one machine, so passive is the safer default. It only works if set before torch
# loads libgomp, which in this code base happens below this package; an explicit
# OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_EXPORTS = {  # module: the names it exports here
    "backbone": ("create_backbone", "UnknownBackbone"),
    "weights": ("WeightsError", "PACKAGED_WEIGHTS"),
    "card": ("ModelCard",),
    "modeldir": ("EmbeddingModel", "ModelNotFound", "load_model", "load_model_dir",
                 "save_model_dir"),
    "embed": ("Embedder", "EmbeddedBatch"),
}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
