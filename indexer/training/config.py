"""The trainer's settings: one typed record, checked once, saved in every checkpoint.

The defaults are the configuration measured in the README (Grocery Store, 2-core CPU,
under 30 minutes); each field's comment says why it is what it is.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from indexer.model.stagespec import ALL, TrainStages, parse_train_stages
from indexer.training.losses import DEFAULT_LOSS, loss_spec


class TrainConfigError(ValueError):
    """A setting out of range; the message names it."""


@dataclass
class TrainConfig:
    loss: str = DEFAULT_LOSS
    loss_params: dict[str, Any] = field(default_factory=dict)  # override the loss's defaults
    dim: int = 256  # embedding size; 256 keeps vectors small with no measurable loss
    epochs: int = 10
    batch_size: int = 64
    m_per_class: int = 4  # images per class in a batch: 16 classes x 4
    lr: float = 1e-4  # backbone tail: a gentle fine-tune keeps the ImageNet features
    head_lr: float = 1e-3  # the new linear head learns from scratch
    loss_lr: float | None = None  # proxies/centres; None: the loss's own default
    weight_decay: float = 1e-4
    warmup_epochs: int = 1  # head (and proxies) only, backbone frozen, before fine-tuning
    freeze_bn: bool = True  # small class-balanced batches give poor batch statistics
    train_stages: TrainStages = 2  # final backbone stages that train ('all': everything)
    views: int = 4  # cached views per image: plain, mirrored, 2 random crops
    validation_fraction: float = 0.2  # of the training classes, held out to pick the epoch
    pretrained_weight: float = 0.5  # share of the pretrained features in the embedding
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # mixed precision on CUDA (ignored on CPU)
    backbone: str = "tf_efficientnet_lite0"
    weights: str = "packaged"  # 'packaged' ImageNet weights, 'random', or a checkpoint path
    workers: int = -1  # image-decoding threads; -1: 1 on a CPU, most cores beside a GPU

    def __post_init__(self) -> None:
        self.train_stages = parse_train_stages(self.train_stages)
        self.check()

    def check(self) -> None:
        loss_spec(self.loss)  # UnknownLoss lists the valid names
        positive = {"dim": self.dim, "epochs": self.epochs, "batch_size": self.batch_size,
                    "views": self.views}
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise TrainConfigError(f"{name} must be a positive whole number; got {value!r}")
        if self.m_per_class < 2:
            raise TrainConfigError(f"m_per_class must be at least 2; got {self.m_per_class}")
        if self.batch_size % self.m_per_class or self.batch_size < 2 * self.m_per_class:
            raise TrainConfigError(
                f"batch_size ({self.batch_size}) must be a multiple of m_per_class "
                f"({self.m_per_class}) holding at least two classes"
            )
        for name in ("lr", "head_lr"):
            if getattr(self, name) <= 0:
                raise TrainConfigError(f"{name} must be positive; got {getattr(self, name)}")
        if self.loss_lr is not None and self.loss_lr <= 0:
            raise TrainConfigError(f"loss_lr must be positive; got {self.loss_lr}")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise TrainConfigError(
                f"warmup_epochs must be between 0 and epochs ({self.epochs}); "
                f"got {self.warmup_epochs}"
            )
        if not 0 <= self.validation_fraction < 1:
            raise TrainConfigError(
                f"validation_fraction must be in [0, 1); got {self.validation_fraction}"
            )
        if not 0 <= self.pretrained_weight < 1:
            raise TrainConfigError(
                f"pretrained_weight must be in [0, 1); got {self.pretrained_weight}"
            )
        if self.pretrained_weight > 0 and self.train_stages == ALL:
            raise TrainConfigError(
                "pretrained_weight needs a frozen trunk to share; with train_stages='all' "
                "set it to 0"
            )
        if self.workers < -1:
            raise TrainConfigError(f"workers must be -1 (automatic) or more; got {self.workers}")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
