"""Occlusion maps: how much the cosine drops when one patch of an image is hidden.

The model-agnostic check on the decomposition (Zeiler and Fergus, 2014): a patch of the
model input is hidden, one patch at a time, while the other image's vector stays fixed;
a cell's value is the score without occlusion minus the score with that patch hidden.
A hidden patch is filled with its own mean colour: its texture and shapes go, its
colour stays. (A gray patch on a coloured background adds hard edges of its own, and
the cosine then drops wherever the patch lands: a map of the fill, not of the image.)
A 64-px patch is centred on each 32-px cell, so a 224-px input gives the backbone's
7 x 7 grid; a patch of one cell's size hid too little of an object to move the score
on the test pairs (tests/indexer/explain).
"""

from __future__ import annotations

import torch

from indexer.model.modeldir import EmbeddingModel

DEFAULT_PATCH = 64  # two cells wide: hiding one 32-px cell of an object leaves too much of it
DEFAULT_STRIDE = 32
BATCH = 16  # occluded copies per forward pass: bounded memory, most of the batching gain


def occluded_copies(x: torch.Tensor, patch: int, stride: int) -> torch.Tensor:
    """(rows * cols, C, H, W): ``x`` (C, H, W, normalised) with one ``patch``-px square,
    centred on a ``stride``-px cell, flattened to its mean colour in each copy."""
    _, height, width = x.shape
    rows, cols = max(1, height // stride), max(1, width // stride)
    copies = x.expand(rows * cols, *x.shape).clone()
    for row in range(rows):
        for col in range(cols):
            top = max(0, row * stride + (stride - patch) // 2)
            left = max(0, col * stride + (stride - patch) // 2)
            window = (slice(None), slice(top, top + patch), slice(left, left + patch))
            copies[(row * cols + col, *window)] = x[window].mean(dim=(1, 2), keepdim=True)
    return copies


@torch.inference_mode()
def occlusion_map(
    model: EmbeddingModel, x: torch.Tensor, other: torch.Tensor, *,
    patch: int = DEFAULT_PATCH, stride: int = DEFAULT_STRIDE,
) -> tuple[float, torch.Tensor]:
    """(score, map (rows, cols)): the drop in ``model(x) · other`` per hidden patch of ``x``.

    ``x``: one normalised CHW input; ``other``: the other image's unit vector (dim,).
    """
    base = float(model(x[None]).float()[0] @ other)
    copies = occluded_copies(x, patch, stride)
    scores = torch.cat([model(copies[start : start + BATCH]).float() @ other
                        for start in range(0, len(copies), BATCH)])
    rows = max(1, x.shape[1] // stride)
    return base, (base - scores).reshape(rows, -1)
