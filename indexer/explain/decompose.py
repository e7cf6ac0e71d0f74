"""The cosine of two embeddings as a sum over their feature-map cells.

With global average pooling an embedding is ``v = P/|P|``, ``P`` the mean of the final
feature map's cells. A linear head is affine, so ``head(mean f_i) = mean head(f_i)``:
each cell's projection through the head is its share of the pooled vector. Writing
``u_i = c_i / (N |P|)`` (``c_i`` the projected cell), ``Σ_i u_i = v`` exactly, and

    cos(v_q, v_r) = Σ_ij u_i · u'_j                (Stylianou et al., WACV 2019)

The row sums ``u_i · v_r`` are the query's map and the column sums ``u'_j · v_q`` the
result's: the full ``Nq x Nr`` matrix is never needed. A blended model's vector is
``[sqrt(1-w) L/|L|, sqrt(w) R/|R|]``; each half decomposes on its own cells (the
learned tail through the head, the frozen reference tail as it is), and the halves'
cell shares, concatenated, again sum to the model's vector.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from indexer.model.device import autocast_context
from indexer.model.modeldir import EmbeddingModel


class NotDecomposable(ValueError):
    """The model does not end in an average-pooled feature map (use occlusion)."""


def _check_avg_pool(pool: nn.Module | None) -> None:
    kind = getattr(pool, "pool_type", None)
    if kind != "avg":
        raise NotDecomposable(
            f"the decomposition needs global average pooling, the model pools with "
            f"{kind or type(pool).__name__!r}; use method 'occlusion'"
        )


def _as_cells(feature_map: torch.Tensor) -> torch.Tensor:
    if feature_map.dim() != 4:
        raise NotDecomposable(f"the backbone's features are not a 2-D map "
                              f"(shape {tuple(feature_map.shape)}); use method 'occlusion'")
    return feature_map.float().permute(0, 2, 3, 1)  # (n, h, w, channels)


def _head_cells(head: nn.Linear | None, cells: torch.Tensor) -> torch.Tensor:
    return cells if head is None else F.linear(cells, head.weight.float(), head.bias.float())


class FeatureMaps(nn.Module):
    """Normalised NCHW input → (n, h, w, channels) float32: the final feature map of each
    half of the model's vector (a blend: the learned tail's, then the frozen reference
    tail's), before pooling, concatenated on the channels. What the decomposition needs
    of the network; one module, so a runtime can run it (``Explainer``)."""

    def __init__(self, model: EmbeddingModel) -> None:
        super().__init__()
        _check_avg_pool(model.backbone.global_pool)
        if model.reference is not None and not model.split.tail_is_empty:
            _check_avg_pool(model.reference.global_pool)
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        model = self.model
        backbone = model.backbone
        if model.reference is None:
            return _as_cells(backbone.forward_features(x))
        split, reference = model.split, model.reference
        if split.tail_is_empty:  # the trunk is the whole backbone: both halves share its map
            return _as_cells(backbone.forward_features(x))
        h = split.trunk(x)
        tail = h
        for stage in backbone.blocks[split.cut :]:
            tail = stage(tail)
        learned = _as_cells(backbone.bn2(backbone.conv_head(tail)))
        reference_map = _as_cells(reference.bn2(reference.conv_head(reference.stages(h))))
        return torch.cat([learned, reference_map], dim=3)


def _halves(model: EmbeddingModel, maps: torch.Tensor) -> list[tuple[float, torch.Tensor]]:
    """(weight, projected cells (n, h, w, d)) of each half of the model's vector, from
    :class:`FeatureMaps`' output; the head and everything after it in float32."""
    maps = maps.float()
    if model.reference is None:
        return [(1.0, _head_cells(model.head, maps))]
    if model.split.tail_is_empty:
        learned = reference_map = maps
    else:
        learned, reference_map = maps.split(maps.shape[3] // 2, dim=3)
    w = model.pretrained_weight
    return [(1 - w, _head_cells(model.head, learned)), (w, reference_map)]


@torch.inference_mode()
def feature_maps(model: EmbeddingModel, x: torch.Tensor, precision: str = "fp32"
                 ) -> torch.Tensor:
    """:class:`FeatureMaps` of ``x`` in PyTorch, at ``precision`` (autocast)."""
    with autocast_context(precision, x.device):
        return FeatureMaps(model)(x).float()


@torch.inference_mode()
def cell_shares(model: EmbeddingModel, maps: torch.Tensor) -> torch.Tensor:
    """(n, h, w, dim) float32: each cell's share of the model's output; the shares of an
    image sum to its unit vector. ``maps``: :class:`FeatureMaps`' output for the images."""
    shares = []
    for weight, cells in _halves(model, maps):
        count = cells.shape[1] * cells.shape[2]
        pooled = cells.mean(dim=(1, 2))  # (n, d): what the model's pooling gives
        norm = pooled.norm(dim=1).clamp_min(1e-12)  # F.normalize's eps
        shares.append(cells * (math.sqrt(weight) / count) / norm[:, None, None, None])
    return torch.cat(shares, dim=3)


def decompose(
    query: torch.Tensor, result: torch.Tensor
) -> tuple[float, torch.Tensor, torch.Tensor]:
    """(score, query map (h, w), result map (h', w')) of one image's cell shares each.

    Each map sums to the score, the cosine of the two vectors.
    """
    v_query, v_result = query.sum(dim=(0, 1)), result.sum(dim=(0, 1))
    query_map = query @ v_result
    result_map = result @ v_query
    score = float(query_map.double().sum())
    return score, query_map, result_map
