"""A tiny training configuration: timm's ``test_efficientnet`` (99k parameters, random
weights) on a few generated photos, so a whole run takes about a second."""

from indexer.training.config import TrainConfig


def tiny_config(**overrides) -> TrainConfig:
    values = dict(backbone="test_efficientnet", weights="random", epochs=3, batch_size=8,
                  m_per_class=2, views=2, dim=8, train_stages=1, validation_fraction=0.25,
                  pretrained_weight=0.5, device="cpu", seed=0)
    values.update(overrides)
    return TrainConfig(**values)
