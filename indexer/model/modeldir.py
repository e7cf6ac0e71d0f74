"""Embedding models: the pretrained backbone's pooled features, or a trained model directory.

A model directory holds ``weights.safetensors`` (backbone and head together: a fine-tune
changes both) and ``card.json`` (see :mod:`indexer.model.card`). Without a trained model
the engine runs on the pretrained backbone's pooled features, so a fresh install can
index and search at once; the version string then names the weights file by hash, so
vectors from different weights never mix in one store.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from indexer.config import Settings
from indexer.fsutil import atomic_write_text, atomic_writer, sha256_file
from indexer.model.backbone import DataConfig, build_backbone, create_backbone, default_weights_path
from indexer.model.card import CardError, ModelCard, normalize_data_config, read_card, write_card
from indexer.model.quality import Measurement, card_measurement, saved_evaluations
from indexer.model.stages import BackboneSplit, FrozenTail
from indexer.model.stagespec import TrainStages
from indexer.model.weights import PACKAGED_WEIGHTS, WeightsError, read_state_dict

logger = logging.getLogger(__name__)

PRETRAINED = "pretrained"
CURRENT_FILE = "CURRENT"  # in settings.models_dir: the name `lookalike models use` chose
WEIGHTS_FILE = "weights.safetensors"
LEGACY_WEIGHTS_FILES = ("weights.pt", "weights.pth")


class ModelNotFound(FileNotFoundError):
    """The model spec names neither 'pretrained' nor an existing model directory."""


class EmbeddingModel(nn.Module):
    """Backbone → optional linear head → L2 normalisation, optionally blended.

    ``forward`` returns float32 unit vectors even under autocast: the normalisation is
    done in float32 so that bf16/fp16 inference still yields vectors the index can trust.
    The trainer builds one of these directly (``card=None``) and saves it with
    :func:`save_model_dir`, which gives it its card and version.

    A *blended* model (:meth:`add_pretrained_blend`) outputs
    ``[sqrt(1-w) * learned, sqrt(w) * pretrained]``, both halves unit vectors, so the
    cosine similarity of two outputs is ``(1-w) * learned cosine + w * pretrained
    cosine``: an ensemble of the fine-tuned model with the features it started from,
    which keeps what ImageNet taught about products unlike the training classes.
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
        self.directory: Path | None = None  # a saved model's directory (its graphs go there)
        self.pooled_dim = int(backbone.num_features)
        if head is not None and head.in_features != self.pooled_dim:
            raise ValueError(
                f"head takes {head.in_features} features, {architecture} gives {self.pooled_dim}"
            )
        self.split: BackboneSplit | None = None
        self.reference: FrozenTail | None = None
        self.pretrained_weight = 0.0

    def add_pretrained_blend(self, train_stages: TrainStages, weight: float) -> None:
        """Keep a frozen copy of the current (pretrained) tail beside the trained one."""
        if self.head is None:
            raise ValueError("a blend needs a learned head")
        if not 0 < weight < 1:
            raise ValueError(f"pretrained weight must be in (0, 1); got {weight}")
        self.split = BackboneSplit(self.backbone, train_stages)
        self.reference = FrozenTail(self.split)
        self.pretrained_weight = float(weight)

    @property
    def blend(self) -> dict[str, Any] | None:
        if self.reference is None:
            return None
        return {"pretrained_weight": self.pretrained_weight,
                "train_stages": self.split.train_stages,
                "pretrained_dim": self.reference.out_features}

    @property
    def learned_dim(self) -> int:
        return self.head.out_features if self.head is not None else self.pooled_dim

    @property
    def dim(self) -> int:
        extra = self.reference.out_features if self.reference is not None else 0
        return self.learned_dim + extra

    def from_trunk(self, trunk_output: torch.Tensor) -> torch.Tensor:
        """The blended unit vectors from the shared trunk's output."""
        learned = F.normalize(self.head(self.split.tail(trunk_output)).float(), dim=1)
        pretrained = F.normalize(self.reference(trunk_output).float(), dim=1)
        w = self.pretrained_weight
        return torch.cat([learned * math.sqrt(1 - w), pretrained * math.sqrt(w)], dim=1)

    @property
    def version(self) -> str:
        if self.card is None:
            raise RuntimeError("an unsaved model has no version yet; save it with save_model_dir")
        return self.card.version

    def forward(self, images: torch.Tensor, *, normalize: bool = True) -> torch.Tensor:
        if self.reference is not None:
            return self.from_trunk(self.split.trunk(images))
        features = self.backbone(images)
        if self.head is not None:
            features = self.head(features)
        features = features.float()
        return F.normalize(features, dim=1) if normalize else features


def current_model_spec(settings: Settings) -> str:
    """``settings.model`` if set, else the model chosen with :func:`use_model`, else pretrained."""
    if settings.model:
        return settings.model
    try:
        chosen = (settings.models_dir / CURRENT_FILE).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return PRETRAINED
    return chosen or PRETRAINED


def use_model(spec: str, settings: Settings) -> str:
    """Make ``spec`` (a name under models_dir, or 'pretrained') the current model.

    The model must load; the choice is written atomically. Returns its version. The
    index keeps serving vectors of the previous model until it is rebuilt, and refuses
    to mix the two (see :meth:`indexer.engine.Lookalike.build_index`).
    """
    model = load_model(spec, settings)
    if spec != PRETRAINED and resolve_model_dir(spec, settings).parent != settings.models_dir:
        raise ModelNotFound(f"{spec!r} is not under {settings.models_dir}; use its name there")
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    name = spec if spec == PRETRAINED else resolve_model_dir(spec, settings).name
    atomic_write_text(settings.models_dir / CURRENT_FILE, name + "\n")
    return model.version


@dataclass
class ModelEntry:
    name: str
    card: ModelCard | None  # None for 'pretrained' (its card needs the weights loaded)
    current: bool
    version: str | None = None  # None: pretrained weights that are not installed
    # The card's test metrics first, then the saved evaluations of this version, newest
    # first: each with the split it was measured on (indexer.model.quality).
    measurements: list[Measurement] = field(default_factory=list)


def list_models(settings: Settings) -> list[ModelEntry]:
    """'pretrained' and every model directory under models_dir, newest first."""
    current = current_model_spec(settings)
    evaluations = saved_evaluations(settings.evaluations_dir)
    entries = []
    for directory in _model_dirs(settings.models_dir):
        try:
            card = read_card(directory)
        except CardError as exc:
            logger.warning("skipping %s: %s", directory, exc)
            continue
        entries.append(ModelEntry(directory.name, card, directory.name == current, card.version,
                                  _measurements(card, evaluations)))
    entries.sort(key=lambda entry: entry.card.created, reverse=True)
    version = _installed_pretrained_version(settings.backbone)
    pretrained = ModelEntry(PRETRAINED, None, current == PRETRAINED, version,
                            list(evaluations.get(version, [])) if version else [])
    return [pretrained, *entries]


def model_measurements(spec: str, settings: Settings) -> list[Measurement]:
    """What is known of ``spec``'s quality: its card's test metrics and saved evaluations."""
    evaluations = saved_evaluations(settings.evaluations_dir)
    if spec == PRETRAINED:
        version = _installed_pretrained_version(settings.backbone)
        return list(evaluations.get(version, [])) if version else []
    return _measurements(read_card(resolve_model_dir(spec, settings)), evaluations)


def _measurements(card: ModelCard, evaluations: dict[str, list[Measurement]]) -> list[Measurement]:
    own = card_measurement(card)
    return [*([own] if own else []), *evaluations.get(card.version, [])]


def _installed_pretrained_version(architecture: str) -> str | None:
    try:
        return pretrained_version(architecture)
    except WeightsError:  # weights not installed: nothing was evaluated with them here
        return None


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
    card = ModelCard(
        version=pretrained_version(architecture, checkpoint),
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


def pretrained_version(architecture: str, checkpoint: Path | None = None) -> str:
    """``<architecture>-<in1k | custom>-pooled-<sha256[:8] of the weights file>``, without
    building the model; raises :class:`WeightsError` when the weights are not installed."""
    weights_path = default_weights_path(architecture, checkpoint)
    if not weights_path.is_file():
        raise WeightsError(f"Checkpoint not found: {weights_path}")
    digest = _cached_sha256(str(weights_path.resolve()), *_stat_key(weights_path))
    tag = PACKAGED_WEIGHTS[architecture].tag if checkpoint is None else "custom"
    return f"{architecture}-{tag}-pooled-{digest[:8]}"


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
        blend=model.blend,
        training_data=dict(training_data) if isinstance(training_data, Mapping) else training_data,
        metrics=dict(metrics or {}),
        training=dict(training or {}),
    )
    write_card(directory, card)
    model.card = card
    model.directory = directory
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
    learned_dim = card.embedding_dim - (card.blend or {}).get("pretrained_dim", 0)
    head = nn.Linear(card.pooled_dim, learned_dim) if card.head == "linear" else None
    if card.head not in (None, "linear"):
        raise WeightsError(f"{directory}: unknown head {card.head!r}; known: linear, none")
    model = EmbeddingModel(
        backbone, head, architecture=card.architecture, data_config=card.data_config, card=card
    )
    if card.blend:
        model.add_pretrained_blend(card.blend["train_stages"], card.blend["pretrained_weight"])
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
    model.directory = directory
    return model.eval()


GRAPHS_DIR = "onnx"  # in a model directory: its exported graphs (indexer.model.export)


def graph_directory(model: EmbeddingModel, cache_dir: Path | None) -> Path:
    """Where ``model``'s exported graphs live: its own directory's ``onnx/``, else (the
    pretrained weights) ``cache_dir/graphs/<version>``, else a directory for this process."""
    if model.directory is not None:
        return model.directory / GRAPHS_DIR
    if model.card is None:  # not saved yet (a trainer scoring its model): this process only
        return _process_scratch() / f"unsaved-{state_digest(model)[:16]}"
    if cache_dir is not None:
        return Path(cache_dir) / "graphs" / model.version
    return _process_scratch() / model.version


def graph_identity(model: EmbeddingModel) -> dict[str, Any]:
    """What a graph of ``model`` must have been exported from, to stand in for it."""
    card = model.card
    return {"graph": "embedding", "model_version": card.version if card else "unsaved",
            "weights_sha256": card.weights_sha256 if card else state_digest(model),
            "architecture": model.architecture, "dim": model.dim,
            "input_size": list(model.data_config["input_size"]),
            "mean": list(model.data_config["mean"]), "std": list(model.data_config["std"])}


def state_digest(module: nn.Module) -> str:
    """sha256 of a module's weights and buffers, for one that has no weights file yet."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def _process_scratch() -> Path:
    import atexit
    import shutil
    import tempfile

    scratch = Path(tempfile.mkdtemp(prefix="lookalike-graphs-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    return scratch


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
