"""The timm backbone: build it by name, load weights without a hub, resolve its data config.

``pretrained=False`` always: weights come from a packaged file or a user checkpoint
(see :mod:`indexer.model.weights`), never from the network. Unknown names are refused
with suggestions, the way timm's ``create_model`` refuses them.
"""

from __future__ import annotations

import difflib
import logging
from pathlib import Path
from typing import Any

import timm
import timm.data
import torch

from indexer.model.weights import (
    PACKAGED_WEIGHTS,
    fit_state_dict,
    packaged_weights_path,
    read_state_dict,
)

logger = logging.getLogger(__name__)

DataConfig = dict[str, Any]


class UnknownBackbone(ValueError):
    """The name is not a timm architecture."""


def check_backbone_name(name: str) -> None:
    """Refuse a name timm does not know, listing the valid ones that come closest."""
    if timm.is_model(name):
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=8, cutoff=0.6)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UnknownBackbone(
        f"Unknown backbone {name!r}.{hint} Backbones with packaged ImageNet weights: "
        f"{', '.join(sorted(PACKAGED_WEIGHTS))}; any other name from timm.list_models() "
        "works with a checkpoint file."
    )


def build_backbone(name: str, *, num_classes: int = 0) -> torch.nn.Module:
    """The architecture with random weights (for loading a saved model over it).

    ``num_classes=0`` gives timm's pooled features (1,280-d for lite0).
    """
    check_backbone_name(name)
    return timm.create_model(name, pretrained=False, num_classes=num_classes)


def backbone_data_config(model: torch.nn.Module) -> DataConfig:
    """What the weights expect (size, interpolation, mean/std, crop), as timm resolves it."""
    return dict(timm.data.resolve_data_config({}, model=model))


def default_weights_path(name: str, checkpoint: Path | None) -> Path:
    """The checkpoint if given, else the packaged ImageNet weights for ``name``."""
    return Path(checkpoint) if checkpoint is not None else packaged_weights_path(name)


def create_backbone(
    name: str, checkpoint: Path | None = None, *, num_classes: int = 0
) -> tuple[torch.nn.Module, DataConfig]:
    """A timm model with loaded weights, in eval mode, and its data config.

    ``num_classes=0`` (the default) gives pooled features; pass the checkpoint's class
    count (1000 for the packaged ImageNet weights) to keep its classifier, which is how
    the tests verify the weight mapping on real photos.
    """
    check_backbone_name(name)
    path = default_weights_path(name, checkpoint)  # fail before building anything
    model = build_backbone(name, num_classes=num_classes)
    state = fit_state_dict(model, read_state_dict(path), origin=str(path))
    model.load_state_dict(state, strict=True)
    model.eval()
    logger.info("loaded %s weights from %s", name, path)
    return model, backbone_data_config(model)
