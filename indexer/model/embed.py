"""Fast batched embedding: image files or PIL images in, float32 unit vectors out.

Why it is shaped like this:

* **Decoding overlaps the forward pass.** Loader workers (threads on CPU, processes
  through a torch ``DataLoader`` on CUDA; :mod:`indexer.model.loading`) decode and
  resize the next batches while the model runs; pixels travel as uint8 and are
  normalised batch-wise on the device (:mod:`indexer.model.preprocess`).
* **Device and precision** come from :mod:`indexer.model.device`: fp16 autocast on
  CUDA, bf16 on a CPU with native bf16, else fp32. Vectors are normalised in float32
  whatever the compute precision.
* **A bad image never loses the batch**: decode failures come back in
  ``EmbeddedBatch.failures`` with a reason; the catalog records it on the item.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from indexer.model.device import (
    Device,
    Precision,
    auto_torch_threads,
    autocast_context,
    resolve_device,
    resolve_precision,
    resolve_workers,
)
from indexer.model.loading import LoadedBatch, LoaderKind, choose_loader, load_batches
from indexer.model.modeldir import EmbeddingModel
from indexer.model.preprocess import DEFAULT_MAX_PIXELS, PixelNormalizer, Preprocessor

logger = logging.getLogger(__name__)


@dataclass
class EmbeddedBatch:
    """One batch of results. ``indices`` are positions in the input sequence."""

    indices: np.ndarray  # int64, shape (n,)
    vectors: np.ndarray  # float32, shape (n, dim), L2-normalised rows
    failures: list[tuple[int, str]] = field(default_factory=list)  # (position, reason)


class Embedder:
    """Runs an :class:`EmbeddingModel` over files or images, in batches, on one device.

    ``workers``: loader workers (-1: automatic, 0: decode in the calling thread).
    ``loader``: 'process' (torch DataLoader worker processes), 'thread' (a thread pool:
    Pillow releases the GIL while decoding and resizing), or 'auto' (see
    :func:`~indexer.model.loading.choose_loader`). ``threads``: torch intra-op threads
    (None: see :func:`~indexer.model.device.auto_torch_threads`). ``draft``: decode big
    JPEGs at reduced scale.
    ``max_pixels``: refuse larger images (decompression bombs).
    """

    def __init__(
        self,
        model: EmbeddingModel,
        device: Device | str = "auto",
        precision: Precision | str = "auto",
        batch_size: int = 32,
        workers: int = -1,
        *,
        loader: LoaderKind | str = "auto",
        threads: int | None = None,
        draft: bool = True,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.batch_size = batch_size
        self.workers = resolve_workers(workers, self.device)
        self.loader = choose_loader(loader, self.device)
        threads = threads if threads is not None else auto_torch_threads(self.workers, self.device)
        if threads is not None and threads != torch.get_num_threads():
            torch.set_num_threads(max(1, threads))  # process-wide: torch has no other knob
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input size: pick the fastest kernels
        self.model = model.eval().to(self.device, memory_format=torch.channels_last)
        self.preprocessor = Preprocessor(model.data_config, draft=draft, max_pixels=max_pixels)
        self.normalize = PixelNormalizer(model.data_config, self.device)
        logger.info(
            "embedder: %s on %s, %s, batch %d, %d %s loader workers, %d torch threads",
            model.card.version if model.card else model.architecture, self.device,
            self.precision, batch_size, self.workers, self.loader, torch.get_num_threads(),
        )

    @property
    def dim(self) -> int:
        return self.model.dim

    @property
    def version(self) -> str:
        return self.model.version

    def autocast(self) -> contextlib.AbstractContextManager:
        """The autocast context of this embedder's precision (a no-op for fp32)."""
        return autocast_context(self.precision, self.device)

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Vectors for decoded images (queries): float32, shape (len(images), dim)."""
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            pixels = torch.stack([self.preprocessor.from_image(im) for im in chunk])
            out.append(self._forward(pixels))
        return np.concatenate(out)

    def embed_paths(self, paths: Sequence[Path], progress: bool = False) -> Iterator[EmbeddedBatch]:
        """Embed image files in order; one :class:`EmbeddedBatch` per batch of inputs.

        Unreadable images are reported in ``failures`` (position, reason) and never
        raise; every position appears exactly once, in ``indices`` or in ``failures``.
        """
        if not paths:
            return
        bar = tqdm(total=len(paths), unit="img", desc="embedding", file=sys.stderr,
                   disable=not progress, dynamic_ncols=True)
        try:
            for loaded in self._load(paths):
                vectors = (
                    self._forward(loaded.pixels)
                    if loaded.pixels is not None
                    else np.zeros((0, self.dim), dtype=np.float32)
                )
                bar.update(len(loaded.indices) + len(loaded.failures))
                yield EmbeddedBatch(loaded.indices, vectors, loaded.failures)
        finally:
            bar.close()

    @torch.inference_mode()
    def _forward(self, pixels: torch.Tensor) -> np.ndarray:
        x = self.normalize(pixels)
        with self.autocast():
            vectors = self.model(x)
        return vectors.float().cpu().numpy()

    def _load(self, paths: Sequence[Path]) -> Iterator[LoadedBatch]:
        return load_batches(paths, self.preprocessor, batch_size=self.batch_size,
                            workers=self.workers, loader=self.loader,
                            pin_memory=self.device.type == "cuda")
