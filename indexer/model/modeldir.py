"""Embedding models: the pretrained backbone's pooled features, or a trained model directory.

A model directory holds ``weights.safetensors`` (backbone and head together: a fine-tune
changes both) and ``card.json`` (see :mod:`indexer.model.card`). Without a trained model
the engine runs on the pretrained backbone's pooled features, so a fresh install can
index and search at once; the version string then names the weights file by hash, so
vectors from different weights never mix in one store.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from indexer.config import Settings
from indexer.fsutil import atomic_writer, sha256_file
from indexer.model.backbone import DataConfig, build_backbone, create_backbone, default_weights_path
from indexer.model.card import ModelCard, normalize_data_config, read_card, write_card
from indexer.model.weights import PACKAGED_WEIGHTS, WeightsError, read_state_dict

logger = logging.getLogger(__name__)

PRETRAINED = "pretrained"
WEIGHTS_FILE = "weights.safetensors"
LEGACY_WEIGHTS_FILES = ("weights.pt", "weights.pth")


class ModelNotFound(FileNotFoundError):
    """The model spec names neither 'pretrained' nor an existing model directory."""


class EmbeddingModel(nn.Module):
    """Backbone → optional linear head → L2 normalisation.

    ``forward`` returns float32 unit vectors even under autocast: the normalisation is
    done in float32 so that bf16/fp16 inference still yields vectors the index can trust.
    The trainer builds one of these directly (``card=None``) and saves it with
    :func:`save_model_dir`, which gives it its card and version.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Linear | None = None,
        *,
        architecture: str,
        data_config: DataConfig,
        card: ModelCard | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.architecture = architecture
        self.data_config: DataConfig = normalize_data_config(dict(data_config))
        self.card = card
        self.pooled_dim = int(backbone.num_features)
        if head is not None and head.in_features != self.pooled_dim:
            raise ValueError(
                f"head takes {head.in_features} features, {architecture} gives {self.pooled_dim}"
            )

    @property
    def dim(self) -> int:
        return self.head.out_features if self.head is not None else self.pooled_dim

    @property
    def version(self) -> str:
        if self.card is None:
            raise RuntimeError("an unsaved model has no version yet; save it with save_model_dir")
        return self.card.version

    def forward(self, images: torch.Tensor, *, normalize: bool = True) -> torch.Tensor:
        features = self.backbone(images)
        if self.head is not None:
            features = self.head(features)
        features = features.float()
        return F.normalize(features, dim=1) if normalize else features


def load_model(spec: str, settings: Settings, *, checkpoint: Path | None = None) -> EmbeddingModel:
    """The model named by ``spec``, on the CPU, in eval mode.

    ``spec``: ``'pretrained'`` (``settings.backbone``'s pooled features, from its packaged
    weights or ``checkpoint``), a model directory path, or the name of a directory under
    ``settings.models_dir``.
    """
    if spec == PRETRAINED:
        return pretrained_model(settings.backbone, checkpoint)
    return load_model_dir(resolve_model_dir(spec, settings))


def resolve_model_dir(spec: str, settings: Settings) -> Path:
    """A model directory from a path or a name under ``settings.models_dir``."""
    for candidate in (Path(spec).expanduser(), settings.models_dir / spec):
        if candidate.is_dir():
            return candidate
    available = sorted(p.name for p in _model_dirs(settings.models_dir))
    raise ModelNotFound(
        f"No model {spec!r}: not 'pretrained', not a directory, not in {settings.models_dir}. "
        f"Available: {', '.join([PRETRAINED, *available])}"
    )


def pretrained_model(architecture: str, checkpoint: Path | None = None) -> EmbeddingModel:
    """The backbone's pooled features, L2-normalised; no head."""
    weights_path = default_weights_path(architecture, checkpoint)
    backbone, data_config = create_backbone(architecture, checkpoint)
    digest = _cached_sha256(str(weights_path.resolve()), *_stat_key(weights_path))
    tag = PACKAGED_WEIGHTS[architecture].tag if checkpoint is None else "custom"
    card = ModelCard(
        version=f"{architecture}-{tag}-pooled-{digest[:8]}",
        architecture=architecture,
        embedding_dim=int(backbone.num_features),
        pooled_dim=int(backbone.num_features),
        head=None,
        data_config=data_config,
        weights_file=str(weights_path),
        weights_sha256=digest,
        created=datetime.fromtimestamp(weights_path.stat().st_mtime, UTC).isoformat(
            timespec="seconds"
        ),
    )
    model = EmbeddingModel(
        backbone, None, architecture=architecture, data_config=data_config, card=card
    )
    return model.eval()


def save_model_dir(
    directory: Path,
    model: EmbeddingModel,
    *,
    version: str | None = None,
    loss: Mapping[str, Any] | str | None = None,
    training_data: Mapping[str, Any] | str | None = None,
    metrics: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
) -> ModelCard:
    """Write ``model`` as a model directory: weights first, then ``card.json`` last.

    The default version is ``<architecture>-<loss name>-d<dim>-<sha256[:8] of weights>``,
    unique per set of weights. Returns the card (also set on ``model.card``).
    """
    from safetensors.torch import save as save_safetensors

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_writer(directory / WEIGHTS_FILE) as handle:
        handle.write(save_safetensors(state, metadata={"architecture": model.architecture}))
    digest = sha256_file(directory / WEIGHTS_FILE)
    if version is None:
        loss_name = loss if isinstance(loss, str) else (loss or {}).get("name", "trained")
        version = f"{model.architecture}-{loss_name}-d{model.dim}-{digest[:8]}"
    card = ModelCard(
        version=version,
        architecture=model.architecture,
        embedding_dim=model.dim,
        pooled_dim=model.pooled_dim,
        head="linear" if model.head is not None else None,
        data_config=model.data_config,
        weights_file=WEIGHTS_FILE,
        weights_sha256=digest,
        loss=dict(loss) if isinstance(loss, Mapping) else loss,
        training_data=dict(training_data) if isinstance(training_data, Mapping) else training_data,
        metrics=dict(metrics or {}),
        training=dict(training or {}),
    )
    write_card(directory, card)
    model.card = card
    logger.info("saved model %s to %s", version, directory)
    return card


def load_model_dir(directory: Path) -> EmbeddingModel:
    """Rebuild a saved model; refuses weights whose sha256 differs from the card's."""
    directory = Path(directory)
    card = read_card(directory)
    weights_path = directory / (card.weights_file or WEIGHTS_FILE)
    if not weights_path.is_file():
        weights_path = next(
            (directory / n for n in LEGACY_WEIGHTS_FILES if (directory / n).is_file()), weights_path
        )
    if not weights_path.is_file():
        raise WeightsError(f"{directory}: card.json present but no weights file")
    if card.weights_sha256 and sha256_file(weights_path) != card.weights_sha256:
        raise WeightsError(f"{weights_path} does not match the sha256 recorded in card.json")
    backbone = build_backbone(card.architecture, num_classes=0)
    head = nn.Linear(card.pooled_dim, card.embedding_dim) if card.head == "linear" else None
    if card.head not in (None, "linear"):
        raise WeightsError(f"{directory}: unknown head {card.head!r}; known: linear, none")
    model = EmbeddingModel(
        backbone, head, architecture=card.architecture, data_config=card.data_config, card=card
    )
    state = read_state_dict(weights_path)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise WeightsError(f"{weights_path} does not fit {card.architecture}: {exc}") from exc
    if missing or unexpected:
        raise WeightsError(
            f"{weights_path} does not fit {card.architecture} with head {card.head}: "
            f"missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    logger.info("loaded model %s from %s", card.version, directory)
    return model.eval()


def _model_dirs(models_dir: Path) -> list[Path]:
    if not models_dir.is_dir():
        return []
    return [p for p in models_dir.iterdir() if (p / "card.json").is_file()]


def _stat_key(path: Path) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=16)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    """Hashing 18 MB on every API start is cheap, but not in every test: cache per file state."""
    del size, mtime_ns  # part of the cache key only
    return sha256_file(Path(path))
