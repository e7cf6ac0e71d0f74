"""Occlusion maps: how much the cosine drops when one patch of an image is hidden.

The model-agnostic check on the decomposition (Zeiler and Fergus, 2014): a patch of the
model input is hidden, one patch at a time, while the other image's vector stays fixed;
a cell's value is the score without occlusion minus the score with that patch hidden.
A hidden patch is filled with a blurred copy of itself (a 17-px box blur): its
detail goes, its local colour stays. A gray patch adds hard edges of its own on a
coloured background, and the cosine then drops wherever the patch lands (a map of the
fill, not of the image); the patch's flat mean colour did better, the blur better still
on the test pairs (tests/indexer/explain/test_localisation.py). A 48-px patch is
centred on each 32-px cell, so a 224-px input gives the backbone's 7 x 7 grid; a patch
of one cell hid too little of an object to move the score.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from indexer.model.device import autocast_context
from indexer.model.modeldir import EmbeddingModel

DEFAULT_PATCH = 48  # a cell and half of each neighbour: one 32-px cell hid too little
DEFAULT_STRIDE = 32
BLUR_RADIUS = 8  # the fill: a (2r + 1)-px box blur of the image
BATCH = 16  # occluded copies per forward pass: bounded memory, most of the batching gain


def occluded_copies(x: torch.Tensor, patch: int, stride: int) -> torch.Tensor:
    """(rows * cols, C, H, W): ``x`` (C, H, W, normalised) with one ``patch``-px square,
    centred on a ``stride``-px cell, blurred in each copy."""
    _, height, width = x.shape
    rows, cols = max(1, height // stride), max(1, width // stride)
    copies = x.expand(rows * cols, *x.shape).clone()
    blurred = F.avg_pool2d(x[None], 2 * BLUR_RADIUS + 1, stride=1, padding=BLUR_RADIUS,
                           count_include_pad=False)[0]
    for row in range(rows):
        for col in range(cols):
            top, left = row * stride + (stride - patch) // 2, col * stride + (stride - patch) // 2
            window = (slice(None), slice(max(0, top), top + patch),
                      slice(max(0, left), left + patch))
            copies[(row * cols + col, *window)] = blurred[window]
    return copies


@torch.inference_mode()
def occlusion_map(
    model: EmbeddingModel, x: torch.Tensor, other: torch.Tensor, *,
    patch: int = DEFAULT_PATCH, stride: int = DEFAULT_STRIDE, precision: str = "fp32",
) -> tuple[float, torch.Tensor]:
    """(score, map (rows, cols)): the drop in ``model(x) · other`` per hidden patch of ``x``.

    ``x``: one normalised CHW input; ``other``: the other image's unit vector (dim,);
    ``precision``: of the model's forward passes (the products are float32).
    """

    def vectors(batch: torch.Tensor) -> torch.Tensor:
        with autocast_context(precision, batch.device):
            return model(batch).float()

    base = float(vectors(x[None])[0] @ other)
    copies = occluded_copies(x, patch, stride)
    scores = torch.cat([vectors(copies[start : start + BATCH]) @ other
                        for start in range(0, len(copies), BATCH)])
    rows = max(1, x.shape[1] // stride)
    return base, (base - scores).reshape(rows, -1)
