"""The training loop: M-per-class batches, a metric-learning loss, best epoch kept.

Order of work in one run:

1. The embedding head starts as the PCA of the pretrained features of the training
   photos (so epoch 0 already embeds well and training refines rather than repairs).
2. ``warmup_epochs`` train the head and the loss's proxies with the backbone frozen:
   random proxies would otherwise send large, meaningless gradients into it.
3. Then the tail of the backbone trains too, with a cosine learning-rate schedule
   over all steps (each parameter group at its own rate: backbone, head, proxies).
4. After every epoch: validation Recall@1 and MAP@R on held-out training classes
   (computed by :mod:`indexer.model.evaluate`, like every metric), the best epoch's
   weights kept, and an atomic checkpoint written.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from indexer.model.backbone import backbone_data_config, build_backbone, create_backbone
from indexer.model.calibrate import Selection, select_runtime
from indexer.model.device import (
    autocast_context,
    resolve_device,
    resolve_precision,
    resolve_workers,
)
from indexer.model.evaluate import recall_and_map_at_r
from indexer.model.export import ExportedGraph, PixelFunction, ensure_graph, reference_photos
from indexer.model.loading import prefetched
from indexer.model.modeldir import EmbeddingModel, state_digest
from indexer.model.preprocess import PixelNormalizer, Preprocessor
from indexer.model.stages import BackboneSplit, Trunk
from indexer.training.checkpoint import check_compatible, load_checkpoint, save_checkpoint
from indexer.training.config import TrainConfig
from indexer.training.data import TrainingData
from indexer.training.inputs import CachedInputs, LiveInputs
from indexer.training.losses import build_loss
from indexer.training.sampler import MPerClassBatches

log = logging.getLogger(__name__)

EpochCallback = Callable[[int, dict[str, Any]], None]


@dataclass
class TrainResult:
    model: EmbeddingModel  # best epoch's weights, on the CPU, eval mode
    best_epoch: int  # 1-based
    best_validation: dict[str, float] | None  # recall_at_1, map_at_r of the best epoch
    history: list[dict[str, Any]]
    seconds: float
    loss: dict[str, Any]
    images_per_second: float  # training steps only
    cache_seconds: float  # computing the frozen trunk's outputs (0 when reused or none)
    trunk_runtime_seconds: float = 0.0  # exporting, checking and measuring its runtime
    initial_state: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)


def load_initial_backbone(config: TrainConfig) -> tuple[nn.Module, dict]:
    if config.weights == "random":
        backbone = build_backbone(config.backbone)
        return backbone.eval(), backbone_data_config(backbone)
    checkpoint = None if config.weights == "packaged" else Path(config.weights)
    return create_backbone(config.backbone, checkpoint)


class Trainer:
    def __init__(self, config: TrainConfig, data: TrainingData, run_dir: Path,
                 *, progress: bool = False, runtime: str = "auto",
                 cache_dir: Path | None = None) -> None:
        self.config = config
        self.runtime = runtime  # computes the frozen trunk's cache (inference only)
        self.cache_dir = cache_dir
        self._trunk: Selection | None = None  # chosen once a run, by trunk_runtime()
        self.data = data
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.device = resolve_device(config.device)
        self.amp_dtype = self._amp_dtype()
        self.workers = (config.workers if config.workers >= 0
                        else max(1, resolve_workers(-1, self.device)))
        # Caching trunk outputs is inference: like the embedder, bf16 where the CPU has
        # it natively (2.3x faster on an AVX512-BF16 CPU), fp16 on CUDA.
        self.inference_precision = resolve_precision("auto" if config.amp else "fp32",
                                                     self.device)
        self.classes = data.train_classes
        self.labels = np.array([self.classes.index(i.label) for i in data.train])
        self.val_labels = np.array([i.label for i in data.validation])

    def _amp_dtype(self) -> torch.dtype | None:
        if not (self.config.amp and self.device.type == "cuda"):
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    def autocast(self):
        if self.amp_dtype is None:
            return autocast_context("fp32", self.device)
        return torch.autocast("cuda", dtype=self.amp_dtype)

    # -- set-up ----------------------------------------------------------------------

    def _build(self) -> None:
        self.build_model()
        started = time.monotonic()
        if not self.split.trunk_is_empty:
            self.trunk_runtime()  # export, check, measure: apart from the cache's own time
        self.trunk_runtime_seconds = time.monotonic() - started
        cache_started = time.monotonic()
        self.train_inputs = self._inputs(self.data.train, "train")
        self.val_inputs = (self._inputs(self.data.validation, "validation", views=1)
                           if self.data.validation else None)
        self.cache_seconds = time.monotonic() - cache_started

    def build_model(self) -> None:
        """The model, its split, loss and optimizers; nothing computed yet."""
        config = self.config
        torch.manual_seed(config.seed)
        backbone, data_config = load_initial_backbone(config)
        self.split = BackboneSplit(backbone, config.train_stages)
        head = nn.Linear(int(backbone.num_features), config.dim)
        self.model = EmbeddingModel(backbone, head, architecture=config.backbone,
                                    data_config=data_config)
        if config.pretrained_weight > 0:  # copies the tail before it trains
            self.model.add_pretrained_blend(config.train_stages, config.pretrained_weight)
        self.model.to(self.device, memory_format=torch.channels_last)
        self.preprocessor = Preprocessor(data_config)
        self.normalize = PixelNormalizer(data_config, self.device)
        self.sampler = MPerClassBatches(self.labels, config.m_per_class, config.batch_size,
                                        config.seed)
        self.loss = build_loss(config.loss, len(self.classes), config.dim, config.loss_params)
        self.loss.loss.to(self.device)
        groups = [{"params": self.split.tail_parameters(), "base_lr": config.lr},
                  {"params": list(head.parameters()), "base_lr": config.head_lr}]
        groups = [g for g in groups if g["params"]]
        self.optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
        loss_params = list(self.loss.loss.parameters())
        loss_lr = config.loss_lr or self.loss.spec.parameter_lr or config.head_lr
        self.loss_optimizer = (
            torch.optim.AdamW([{"params": loss_params, "base_lr": loss_lr}], lr=loss_lr,
                              weight_decay=0.0)
            if loss_params else None
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

    def _inputs(self, images, label: str, views: int | None = None):
        config = self.config
        if self.split.trunk_is_empty:
            return LiveInputs(images, self.preprocessor, self.normalize, config.views)
        trunk = self.trunk_runtime()
        key = {"images": [f"{i.path}\t{i.label}" for i in images], "backbone": config.backbone,
               "weights": config.weights, "train_stages": config.train_stages,
               "views": views or config.views, "seed": config.seed,
               "precision": trunk.runtime.precision, "runtime": trunk.runtime.name,
               "format": 1}
        self.run_dir.mkdir(parents=True, exist_ok=True)
        return CachedInputs.open_or_build(
            self.run_dir / f"inputs-{label}.npy", key, images, views or config.views,
            trunk.runtime, self.preprocessor, seed=config.seed, batch_size=trunk.batch_size,
            workers=self.workers, progress=self.progress, label=label,
        )

    def trunk_runtime(self) -> Selection:
        """The frozen trunk on the fastest runtime here, checked against PyTorch; once a run.

        Inference only: what trains (the tail, the head) stays in PyTorch.
        """
        if self._trunk is not None:
            return self._trunk
        config = self.config
        function = PixelFunction(Trunk(self.split), self.model.data_config)
        identity = {"graph": "trunk", "backbone": config.backbone, "weights": config.weights,
                    "weights_sha256": state_digest(self.split.backbone),
                    "train_stages": config.train_stages,
                    "input_size": list(self.model.data_config["input_size"])}
        size = tuple(self.preprocessor.input_size)

        def graph() -> ExportedGraph:
            return ensure_graph(function, name="trunk", directory=self.run_dir / "onnx",
                                identity=identity,
                                check_pixels=reference_photos(self.preprocessor.from_image))

        self._trunk = select_runtime(
            self.runtime, device=self.device, precision=self.inference_precision, threads=None,
            torch_function=lambda: function, graph=graph, input_shape=(*size, 3),
            batch_size=None, cache_dir=self.cache_dir,
            what=f"trunk:{config.backbone}:{config.train_stages}:{size[0]}x{size[1]}",
        )
        log.info("trunk cache on %s (%s), batch %d", self._trunk.runtime.describe(),
                 self._trunk.reason, self._trunk.batch_size)
        return self._trunk

    # -- forward passes --------------------------------------------------------------

    def _tail_input(self, inputs, positions: np.ndarray, epoch: int | None) -> torch.Tensor:
        """Tail input for ``positions``: a view drawn for ``epoch``, or view 0 if None."""
        if isinstance(inputs, CachedInputs):
            if epoch is None:
                return inputs.fixed(positions, self.device)
            return inputs.batch(positions, epoch, self.config.seed, self.device)
        pixels = (inputs.fixed_pixels(positions) if epoch is None
                  else inputs.load(positions, epoch, self.config.seed))
        return self.normalize(pixels).contiguous(memory_format=torch.channels_last)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        """The learned half's unit vectors from tail input (what the loss trains)."""
        with self.autocast():
            pooled = self.split.tail(x)
        return self._embed_pooled(pooled)

    @torch.no_grad()
    def _embed_all(self, inputs, count: int, pooled: bool = False) -> torch.Tensor:
        """View 0 of every image: pooled backbone features, or the model's output vectors."""
        self.split.set_training(False, freeze_bn=True)
        self.model.head.eval()
        out = []
        for start in range(0, count, 128):
            positions = np.arange(start, min(start + 128, count))
            x = self._tail_input(inputs, positions, None)
            with self.autocast():
                if pooled:
                    out.append(self.split.tail(x).float())
                elif self.model.reference is not None:
                    out.append(self.model.from_trunk(x).float())
                else:
                    out.append(self._embed(x))
        return torch.cat(out)

    def _embed_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            features = self.model.head(pooled)
        return F.normalize(features.float(), dim=1)

    def _init_head_pca(self) -> None:
        """Head = the top ``dim`` principal directions of the pretrained pooled features."""
        pooled = self._embed_all(self.train_inputs, len(self.data.train), pooled=True).double()
        dim = self.config.dim
        if dim > min(pooled.shape):
            log.info("dim %d exceeds the PCA rank; keeping the random head", dim)
            return
        mean = pooled.mean(0)
        _, _, vt = torch.linalg.svd(pooled - mean, full_matrices=False)
        weight = vt[:dim]
        with torch.no_grad():
            self.model.head.weight.copy_(weight.float())
            self.model.head.bias.copy_((-weight @ mean).float())

    def validate(self) -> dict[str, float] | None:
        if self.val_inputs is None:
            return None
        vectors = self._embed_all(self.val_inputs, len(self.data.validation))
        return recall_and_map_at_r(vectors.cpu().numpy(), self.val_labels)

    # -- the loop --------------------------------------------------------------------

    def _set_lr(self, progress: float, warming_up: bool) -> None:
        factor = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        if warming_up and not self.split.tail_is_empty:
            self.optimizer.param_groups[0]["lr"] = 0.0
        if self.loss_optimizer is not None:
            for group in self.loss_optimizer.param_groups:
                group["lr"] = group["base_lr"] * factor

    def _state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}

    def fit(self, *, resume: bool = False, on_epoch_end: EpochCallback | None = None,
            ) -> TrainResult:
        config = self.config
        started = time.monotonic()
        self._build()
        fingerprint = self.data.fingerprint()
        first_epoch, history, best = 0, [], {"epoch": 0, "score": None, "state": None}
        if resume:
            state = load_checkpoint(self.run_dir)
            check_compatible(state, config.as_dict(), fingerprint)
            self.model.load_state_dict(state["model"])
            self.loss.loss.load_state_dict(state["loss_state"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.loss_optimizer is not None:
                self.loss_optimizer.load_state_dict(state["loss_optimizer"])
            initial = state["initial"]
            first_epoch, history, best = state["epoch"], state["history"], state["best"]
            log.info("resuming %s after epoch %d", self.run_dir, first_epoch)
        else:
            self._init_head_pca()
            initial = self._state()
        trained_images = 0
        train_seconds = 0.0
        for epoch in range(first_epoch, config.epochs):
            epoch_started = time.monotonic()
            torch.manual_seed(config.seed * 1_000_003 + epoch)  # dropout, drop-path
            loss_sum, steps = self._train_epoch(epoch)
            train_seconds += time.monotonic() - epoch_started
            trained_images += steps * config.batch_size
            validation = self.validate()
            record = {"epoch": epoch + 1, "loss": loss_sum / max(steps, 1),
                      "validation_recall_at_1": validation and validation["recall_at_1"],
                      "validation_map_at_r": validation and validation["map_at_r"],
                      "seconds": round(time.monotonic() - epoch_started, 1)}
            history.append(record)
            # The epoch is chosen by MAP@R: on a few held-out classes Recall@1 saturates
            # (it read 99.6-100.0 in every epoch on Grocery Store) and ties say nothing.
            score = validation["map_at_r"] if validation else float(epoch)
            if best["score"] is None or score > best["score"]:
                best = {"epoch": epoch + 1, "score": score, "state": self._state()}
            log.info("epoch %d/%d: loss %.4f, validation R@1 %s, MAP@R %s", epoch + 1,
                     config.epochs, record["loss"],
                     *(("n/a", "n/a") if validation is None else
                       (f"{validation['recall_at_1']:.1f}", f"{validation['map_at_r']:.1f}")))
            save_checkpoint(self.run_dir, {
                "config": config.as_dict(), "fingerprint": fingerprint, "epoch": epoch + 1,
                "model": self._state(), "loss_state": self.loss.loss.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "loss_optimizer": self.loss_optimizer.state_dict() if self.loss_optimizer else None,
                "best": best, "history": history, "initial": initial,
            })
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, record)
        if best["state"] is not None:
            self.model.load_state_dict(best["state"])
        self.model.cpu().eval()
        return TrainResult(
            model=self.model,
            best_epoch=best["epoch"],
            best_validation=None if self.val_inputs is None else {
                "recall_at_1": history[best["epoch"] - 1]["validation_recall_at_1"],
                "map_at_r": history[best["epoch"] - 1]["validation_map_at_r"]},
            history=history,
            seconds=time.monotonic() - started,
            loss=self.loss.describe(),
            images_per_second=trained_images / train_seconds if train_seconds else 0.0,
            cache_seconds=self.cache_seconds,
            trunk_runtime_seconds=self.trunk_runtime_seconds,
            initial_state=initial,
        )

    def _train_epoch(self, epoch: int) -> tuple[float, int]:
        config = self.config
        warming_up = epoch < config.warmup_epochs
        for parameter in self.split.tail_parameters():
            parameter.requires_grad_(not warming_up)
        self.split.set_training(not warming_up, freeze_bn=config.freeze_bn)
        self.model.head.train()
        batches = self.sampler.epoch(epoch)
        bar = tqdm(total=len(batches), unit="batch", desc=f"epoch {epoch + 1}/{config.epochs}",
                   file=sys.stderr, disable=not self.progress, dynamic_ncols=True)
        loss_sum = 0.0

        def load(positions):
            return positions, self._tail_input(self.train_inputs, positions, epoch)

        workers = self.workers if isinstance(self.train_inputs, LiveInputs) else 0
        loaded = prefetched(batches, load, workers, name="train-load")
        for step, (positions, x) in enumerate(loaded):
            self._set_lr(epoch / config.epochs + step / (len(batches) * config.epochs), warming_up)
            labels = torch.from_numpy(self.labels[positions]).to(self.device)
            if warming_up:  # the tail is frozen: no need to keep its activations
                with torch.no_grad(), self.autocast():
                    x = self.split.tail(x)
                embeddings = self._embed_pooled(x)
            else:
                embeddings = self._embed(x)
            loss = self.loss(embeddings, labels)
            self.optimizer.zero_grad(set_to_none=True)
            if self.loss_optimizer is not None:
                self.loss_optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            if self.loss_optimizer is not None:
                self.scaler.step(self.loss_optimizer)
            self.scaler.update()
            loss_sum += float(loss.detach())
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / (step + 1):.4f}")
        bar.close()
        return loss_sum, len(batches)

