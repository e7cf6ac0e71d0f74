"""A tiny training configuration: timm's ``test_efficientnet`` (99k parameters, random
weights) on a few generated photos, so a whole run takes about a second."""

from pathlib import Path

import torch

from indexer.model.backbone import backbone_data_config, build_backbone
from indexer.model.modeldir import EmbeddingModel, save_model_dir
from indexer.training.config import TrainConfig


def tiny_config(**overrides) -> TrainConfig:
    values = dict(backbone="test_efficientnet", weights="random", epochs=3, batch_size=8,
                  m_per_class=2, views=2, dim=8, train_stages=1, validation_fraction=0.25,
                  pretrained_weight=0.5, device="cpu", seed=0)
    values.update(overrides)
    return TrainConfig(**values)


def write_tiny_model(directory: Path) -> Path:
    """timm's test_efficientnet, random weights, 256-d pooled features, as a model
    directory (version ``tiny-test``): a real model, milliseconds per image."""
    torch.manual_seed(0)
    backbone = build_backbone("test_efficientnet").eval()
    model = EmbeddingModel(backbone, architecture="test_efficientnet",
                           data_config=backbone_data_config(backbone))
    save_model_dir(directory, model, version="tiny-test")
    return directory
