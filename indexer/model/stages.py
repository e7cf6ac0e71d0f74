"""Which part of the backbone trains: a frozen trunk, then a trained tail.

On a 2-core CPU a full fine-tune of EfficientNet-Lite0 costs ~90 ms per image per
step; the last two stages and the conv head cost ~11 ms on the cached output of the
first five (see tests/bench and the README). The early stages hold generic edges and
textures that the few thousand photos of a shop would not improve anyway, so by
default only the last stages train, and the trunk's output is computed once per
view of each photo (:mod:`indexer.training.cache`).

``train_stages``: how many of the backbone's final stages train, with its conv head;
0 trains only the embedding head on frozen pooled features; ``"all"`` trains
everything from the stem up (then nothing is cached: every step sees a fresh view).
Stage-wise splitting needs the EfficientNet/MobileNet layout (``conv_stem``, ``bn1``,
``blocks``, ``conv_head``, ``bn2``), which all packaged backbones have; other timm
models train either all or nothing of the backbone.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
from torch import nn

from indexer.model.stagespec import ALL, StagesError, TrainStages

STAGED_PARTS = ("conv_stem", "bn1", "blocks", "conv_head", "bn2")


def _is_staged(backbone: nn.Module) -> bool:
    return all(hasattr(backbone, name) for name in STAGED_PARTS)


def stage_count(backbone: nn.Module) -> int | None:
    return len(backbone.blocks) if _is_staged(backbone) else None


class BackboneSplit:
    """``backbone(x) == tail(trunk(x))``; only the tail's parameters train.

    A view of the backbone, not a module: its parameters stay the backbone's own.
    """

    def __init__(self, backbone: nn.Module, train_stages: TrainStages) -> None:
        self.backbone = backbone
        stages = stage_count(backbone)
        if train_stages == ALL:
            self.cut = 0
        elif stages is None:
            if train_stages != 0:
                raise StagesError(
                    f"{type(backbone).__name__} has no EfficientNet-style stages; "
                    "train 'all' of it or 0 stages (the head only)"
                )
            self.cut = None  # everything frozen: the trunk is the whole backbone
        elif train_stages > stages:
            raise StagesError(f"the backbone has {stages} stages; cannot train {train_stages}")
        else:
            self.cut = stages - train_stages if train_stages > 0 else None
        self.train_stages = train_stages

    @property
    def trunk_is_empty(self) -> bool:
        return self.train_stages == ALL

    @property
    def tail_is_empty(self) -> bool:
        return self.cut is None

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        b = self.backbone
        if self.trunk_is_empty:
            return x
        if self.tail_is_empty:
            return b.forward_head(b.forward_features(x), pre_logits=True)
        x = b.bn1(b.conv_stem(x))
        for stage in b.blocks[: self.cut]:
            x = stage(x)
        return x

    def tail(self, h: torch.Tensor) -> torch.Tensor:
        b = self.backbone
        if self.tail_is_empty:
            return h
        if self.trunk_is_empty:
            return b.forward_head(b.forward_features(h), pre_logits=True)
        for stage in b.blocks[self.cut :]:
            h = stage(h)
        return b.forward_head(b.bn2(b.conv_head(h)), pre_logits=True)

    def tail_modules(self) -> Iterator[nn.Module]:
        b = self.backbone
        if self.tail_is_empty:
            return
        if self.trunk_is_empty:
            yield b
            return
        yield from b.blocks[self.cut :]
        yield from (b.conv_head, b.bn2)

    def tail_parameters(self) -> list[nn.Parameter]:
        return [p for module in self.tail_modules() for p in module.parameters()]

    def set_training(self, training: bool, *, freeze_bn: bool) -> None:
        """The trunk always in eval mode; the tail in train mode (BN frozen if asked)."""
        self.backbone.eval()
        if not training:
            return
        for module in self.tail_modules():
            module.train()
            if freeze_bn:
                for sub in module.modules():
                    if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                        sub.eval()


class FrozenTail(nn.Module):
    """A frozen copy of a split's tail as it is now: the pretrained half of a blend.

    A trained model can keep the pretrained features beside its learned ones (see
    :class:`indexer.model.modeldir.EmbeddingModel`); both share the frozen trunk, so
    the pretrained half costs only its tail (~3 of ~25 ms per image for Lite0).
    """

    def __init__(self, split: BackboneSplit) -> None:
        super().__init__()
        if split.trunk_is_empty:
            raise StagesError("a pretrained blend needs a frozen trunk to share")
        b = split.backbone
        tail_stages = nn.Sequential() if split.tail_is_empty else b.blocks[split.cut :]
        self.stages = copy.deepcopy(tail_stages)
        self.conv_head = None if split.tail_is_empty else copy.deepcopy(b.conv_head)
        self.bn2 = None if split.tail_is_empty else copy.deepcopy(b.bn2)
        self.global_pool = None if split.tail_is_empty else copy.deepcopy(b.global_pool)
        self.requires_grad_(False)
        self.out_features = int(b.num_features)

    def train(self, mode: bool = True) -> FrozenTail:
        return super().train(False)  # frozen means frozen batch-norm statistics too

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.conv_head is None:
            return h  # the trunk already ends in pooled features
        h = self.bn2(self.conv_head(self.stages(h)))
        pooled = self.global_pool(h)
        return pooled.flatten(1) if pooled.dim() > 2 else pooled


class Trunk(nn.Module):
    """A split's frozen trunk as a module of its own (to export it, or run it elsewhere)."""

    def __init__(self, split: BackboneSplit) -> None:
        super().__init__()
        self.backbone = split.backbone  # registered: .to() and deepcopy carry it
        self.split = split

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.split.trunk(x)
