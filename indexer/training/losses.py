"""Metric-learning losses by name, from pytorch-metric-learning.

Each entry says how to build the loss (and its miner, for pair and triplet losses),
which of its settings a user may change, and whether the loss owns parameters
(proxies, class centres) that need their own optimizer and learning rate: proxy
losses learn far faster than the network under them (SoftTriple's paper trains its
centres at 100x the backbone's rate; ProxyNCA++ likewise).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

# pytorch-metric-learning is imported when a loss is built, not with the registry:
# the command line lists loss names without paying for the import.


class UnknownLoss(ValueError):
    """A loss name that is not in :data:`LOSSES`."""


@dataclass(frozen=True)
class LossSpec:
    name: str
    summary: str
    build: Callable[[int, int, dict[str, Any]], nn.Module]  # (classes, dim, params)
    defaults: dict[str, Any] = field(default_factory=dict)
    parameter_lr: float | None = None  # learning rate of the loss's own parameters
    miner: Callable[[dict[str, Any]], nn.Module] | None = None

    @property
    def has_parameters(self) -> bool:
        return self.parameter_lr is not None


@dataclass
class BuiltLoss:
    """A ready loss: call it with (embeddings, labels)."""

    spec: LossSpec
    params: dict[str, Any]
    loss: nn.Module
    miner: nn.Module | None

    def __call__(self, embeddings, labels):
        if self.miner is None:
            return self.loss(embeddings, labels)
        return self.loss(embeddings, labels, self.miner(embeddings, labels))

    def describe(self) -> dict[str, Any]:
        """Name and every setting, for the model card."""
        return {"name": self.spec.name, **self.params}


def _pml():
    from pytorch_metric_learning import losses, miners

    return losses, miners


def _triplet_miner(params: dict[str, Any]) -> nn.Module:
    return _pml()[1].TripletMarginMiner(
        margin=params["margin"], type_of_triplets=params["triplets"]
    )


LOSSES: dict[str, LossSpec] = {
    spec.name: spec
    for spec in (
        LossSpec(
            "softtriple",
            "SoftTriple (Qian et al. 2019): several centres per class; the default",
            lambda classes, dim, p: _pml()[0].SoftTripleLoss(
                classes, dim, centers_per_class=p["centers_per_class"], la=p["la"],
                gamma=p["gamma"], margin=p["margin"],
            ),
            {"centers_per_class": 10, "la": 20.0, "gamma": 0.1, "margin": 0.01},
            parameter_lr=1e-2,
        ),
        LossSpec(
            "proxynca",
            "ProxyNCA (Movshovitz-Attias et al. 2017) with ProxyNCA++'s temperature",
            lambda classes, dim, p: _pml()[0].ProxyNCALoss(
                classes, dim, softmax_scale=p["softmax_scale"]
            ),
            {"softmax_scale": 9.0},  # 1/temperature; ProxyNCA++ found 1/9 best
            parameter_lr=1e-2,
        ),
        LossSpec(
            "contrastive",
            "contrastive pairs (Hadsell et al. 2006) on cosine distance, all pairs in a batch",
            lambda classes, dim, p: _pml()[0].ContrastiveLoss(
                pos_margin=p["pos_margin"], neg_margin=p["neg_margin"]
            ),
            {"pos_margin": 0.0, "neg_margin": 0.5},
        ),
        LossSpec(
            "triplet",
            "triplet margin loss with a hard or semi-hard triplet miner",
            lambda classes, dim, p: _pml()[0].TripletMarginLoss(margin=p["margin"]),
            {"margin": 0.1, "triplets": "semihard"},
            miner=_triplet_miner,
        ),
        LossSpec(
            "multisimilarity",
            "multi-similarity loss and miner (Wang et al. 2019)",
            lambda classes, dim, p: _pml()[0].MultiSimilarityLoss(
                alpha=p["alpha"], beta=p["beta"], base=p["base"]
            ),
            {"alpha": 2.0, "beta": 50.0, "base": 0.5, "epsilon": 0.1},
            miner=lambda p: _pml()[1].MultiSimilarityMiner(epsilon=p["epsilon"]),
        ),
    )
}
DEFAULT_LOSS = "softtriple"
TRIPLET_TYPES = ("hard", "semihard", "all", "easy")


def loss_spec(name: str) -> LossSpec:
    """The registry entry for ``name``; an unknown name lists the valid ones."""
    try:
        return LOSSES[name]
    except KeyError:
        close = difflib.get_close_matches(name, LOSSES, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownLoss(
            f"unknown loss {name!r}.{hint} Valid losses: {', '.join(LOSSES)}"
        ) from None


def build_loss(
    name: str, num_classes: int, dim: int, overrides: Mapping[str, Any] | None = None
) -> BuiltLoss:
    """The loss (and miner) for ``num_classes`` training classes and ``dim``-d embeddings.

    ``overrides`` change the entry's defaults; a setting the loss does not have is refused.
    """
    spec = loss_spec(name)
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(spec.defaults))
    if unknown:
        known = ", ".join(spec.defaults) or "none"
        raise ValueError(
            f"loss {name!r} has no setting {', '.join(unknown)}; its settings: {known}"
        )
    params = {**spec.defaults, **overrides}
    if name == "triplet" and params["triplets"] not in TRIPLET_TYPES:
        raise ValueError(
            f"triplet mining must be one of {', '.join(TRIPLET_TYPES)}; got {params['triplets']!r}"
        )
    loss = spec.build(num_classes, dim, params)
    miner = spec.miner(params) if spec.miner else None
    return BuiltLoss(spec, params, loss, miner)
