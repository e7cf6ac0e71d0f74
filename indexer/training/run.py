"""One training run, end to end: data → training → test-class evaluation → model directory.

The run directory (``<home>/runs/<name>``) holds the checkpoint and cached trunk
outputs, so ``resume=True`` continues where an interrupted run stopped. The model
directory is written under ``<home>/models/<version>`` only once training and
evaluation have finished, weights first and ``card.json`` last.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from indexer.config import Settings
from indexer.fsutil import fsync_dir
from indexer.model.backbone import backbone_data_config, build_backbone
from indexer.model.card import ModelCard
from indexer.model.embed import Embedder
from indexer.model.evaluate import RetrievalMetrics, evaluate_embedder
from indexer.model.modeldir import EmbeddingModel, save_model_dir
from indexer.model.preprocess import Preprocessor
from indexer.model.quality import SplitRecord
from indexer.training.checkpoint import CHECKPOINT_FILE, CheckpointError
from indexer.training.config import TrainConfig
from indexer.training.data import TrainingData, prepare_training_data
from indexer.training.trainer import Trainer, TrainResult

log = logging.getLogger(__name__)


@dataclass
class TrainOutcome:
    model_dir: Path
    card: ModelCard
    test_metrics: RetrievalMetrics
    result: TrainResult
    data: TrainingData
    skipped: list[tuple[str, str]] = field(default_factory=list)


def default_run_name(config: TrainConfig) -> str:
    return f"{config.loss}-seed{config.seed}"


def evaluate_test_classes(model: EmbeddingModel, data: TrainingData, config: TrainConfig,
                          settings: Settings, progress: bool) -> RetrievalMetrics:
    """Every test image queries all the others, embedded exactly as the index would be."""
    embedder = Embedder(model, device=config.device, precision=settings.precision,
                        batch_size=settings.batch_size, workers=settings.loader_workers,
                        runtime=settings.runtime, cache_dir=settings.runtime_cache_dir)
    scored = evaluate_embedder(embedder, [image.path for image in data.test],
                               [image.label for image in data.test], progress=progress)
    model.cpu()
    return scored.metrics


def train_model(
    sources: list[Path],
    settings: Settings,
    config: TrainConfig,
    *,
    split_file: Path | None = None,
    name: str | None = None,
    resume: bool = False,
    progress: bool = False,
    on_epoch_end=None,
) -> TrainOutcome:
    name = name or default_run_name(config)
    run_dir = settings.home / "runs" / name
    if not resume and (run_dir / CHECKPOINT_FILE).exists():
        raise CheckpointError(
            f"run {name!r} already has a checkpoint in {run_dir}; pass --resume to continue "
            "it, or --name to start another run"
        )
    data_config = backbone_data_config(build_backbone(config.backbone))
    data = prepare_training_data(
        sources, preprocessor=Preprocessor(data_config), split_file=split_file,
        validation_fraction=config.validation_fraction,
    )
    log.info("training on %d images of %d classes (%d validation, %d test images)",
             len(data.train), len(data.train_classes), len(data.validation), len(data.test))
    trainer = Trainer(config, data, run_dir, progress=progress, runtime=settings.runtime,
                      cache_dir=settings.runtime_cache_dir)
    result = trainer.fit(resume=resume, on_epoch_end=on_epoch_end)
    metrics = evaluate_test_classes(result.model, data, config, settings, progress)
    card_metrics = {
        "test": metrics.as_dict(),
        # What "test" was measured on, so the figures travel with their split.
        "test_split": SplitRecord.measured(
            split_file, classes=metrics.classes, images=metrics.queries).as_dict(),
        "best_epoch": result.best_epoch,
        "validation": result.best_validation,
    }
    training = {
        "config": config.as_dict(),
        "run": name,
        "seconds": round(result.seconds, 1),
        "train_images_per_second": round(result.images_per_second, 1),
        "trunk_cache_seconds": round(result.cache_seconds, 1),
        "trunk_runtime_seconds": round(result.trunk_runtime_seconds, 1),
        "device": str(trainer.device),
        "mixed_precision": str(trainer.amp_dtype).removeprefix("torch.")
        if trainer.amp_dtype else None,
        "history": result.history,
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
    }
    model_dir, card = _save(result.model, settings, result, data, card_metrics, training)
    # The cached trunk outputs (~160 KB per photo and view) are only worth keeping to
    # resume an unfinished run; the checkpoint stays for `--resume` with more epochs.
    for cache in run_dir.glob("inputs-*"):
        cache.unlink(missing_ok=True)
    shutil.rmtree(run_dir / "onnx", ignore_errors=True)  # the trunk's graph, made for the cache
    return TrainOutcome(model_dir, card, metrics, result, data, data.skipped)


def _save(model, settings, result, data, metrics, training) -> tuple[Path, ModelCard]:
    """Write into a temporary directory, then rename it to the version it turned out to be."""
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".saving-", dir=settings.models_dir))
    try:
        card = save_model_dir(staging, model, loss=result.loss, training_data=data.describe(),
                              metrics=metrics, training=training)
        final = settings.models_dir / card.version
        if final.exists():  # identical weights: the same version, already saved
            shutil.rmtree(staging)
        else:
            os.replace(staging, final)
            fsync_dir(settings.models_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("saved %s", final)
    return final, card
