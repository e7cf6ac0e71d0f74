"""Fast batched embedding: image files or PIL images in, float32 unit vectors out.

Why it is shaped like this:

* **The fastest runtime here.** The forward pass runs on OpenVINO, ONNX Runtime or
  PyTorch, whichever measured fastest on this machine, at the batch size it liked
  (:mod:`indexer.model.runtime`, :mod:`indexer.model.calibrate`); the graph runtimes
  run the model's ONNX export, checked against PyTorch before use
  (:mod:`indexer.model.export`). A single query takes the latency path.
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

from indexer.images import ImageRejected
from indexer.model.calibrate import Selection, select_runtime
from indexer.model.device import (
    Device,
    Precision,
    auto_torch_threads,
    autocast_context,
    resolve_device,
    resolve_precision,
    resolve_workers,
)
from indexer.model.export import ExportedGraph, PixelFunction, ensure_graph, reference_photos
from indexer.model.jpeg_decode import JpegBatchDecoder, gpu_decoding_available
from indexer.model.loading import (
    LoadedBatch,
    LoaderKind,
    choose_loader,
    load_batches,
    prefetched,
)
from indexer.model.modeldir import EmbeddingModel, graph_directory, graph_identity
from indexer.model.preprocess import DEFAULT_MAX_PIXELS, Preprocessor
from indexer.model.runtime import RUNTIMES, Runtime, RuntimeName

logger = logging.getLogger(__name__)


@dataclass
class EmbeddedBatch:
    """One batch of results. ``indices`` are positions in the input sequence."""

    indices: np.ndarray  # int64, shape (n,)
    vectors: np.ndarray  # float32, shape (n, dim), L2-normalised rows
    failures: list[tuple[int, str]] = field(default_factory=list)  # (position, reason)


class Embedder:
    """Runs an :class:`EmbeddingModel` over files or images, in batches, on one device.

    ``runtime``: 'auto' (the fastest measured here: :mod:`indexer.model.calibrate`),
    'openvino', 'onnxruntime' or 'torch' (:mod:`indexer.model.runtime`); a graph runtime
    runs the model's checked ONNX export (:mod:`indexer.model.export`), cached in the
    model's directory, or under ``cache_dir`` for the pretrained weights (None: a
    temporary directory for this process). ``batch_size``: None to use the batch
    measured for the runtime. ``workers``: loader workers (-1: automatic, 0: decode in
    the calling thread). ``loader``: 'process' (torch DataLoader worker processes),
    'thread' (a thread pool: Pillow releases the GIL while decoding and resizing), or
    'auto' (see :func:`~indexer.model.loading.choose_loader`). ``threads``: the
    runtime's threads (None: automatic). ``draft``: decode big JPEGs at reduced scale.
    ``max_pixels``: refuse larger images (decompression bombs). ``gpu_decode``: on CUDA,
    decode JPEGs with nvJPEG (:mod:`indexer.model.jpeg_decode`) where it works;
    ``tensor_decode``: on a CPU, decode them with torchvision (Pillow when False).
    """

    def __init__(
        self,
        model: EmbeddingModel,
        device: Device | str = "auto",
        precision: Precision | str = "auto",
        batch_size: int | None = None,
        workers: int = -1,
        *,
        loader: LoaderKind | str = "auto",
        threads: int | None = None,
        draft: bool = True,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        runtime: RuntimeName | str = "auto",
        cache_dir: Path | None = None,
        gpu_decode: bool = True,
        tensor_decode: bool = True,
    ) -> None:
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}; got {runtime!r}")
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.workers = resolve_workers(workers, self.device)
        self.loader = choose_loader(loader, self.device)
        torch_threads = (threads if threads is not None
                         else auto_torch_threads(self.workers, self.device))
        if torch_threads is not None and torch_threads != torch.get_num_threads():
            torch.set_num_threads(max(1, torch_threads))  # process-wide: torch has no other knob
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input size: pick the fastest kernels
        self.model = model.eval()
        self.preprocessor = Preprocessor(model.data_config, draft=draft, max_pixels=max_pixels)
        self.cache_dir = cache_dir  # exported graphs of an unsaved / pretrained model go here
        selection = self._select_runtime(runtime, batch_size, threads, cache_dir)
        self.runtime: Runtime = selection.runtime
        self.batch_size = selection.batch_size
        # On CUDA the GPU's own JPEG decoder feeds the model (CPU decoding starved an
        # H200 at 2% of its forward rate); on a CPU with a loader, torchvision's decoder
        # and torch's uint8 resize cost less CPU than Pillow's. Photos either refuses
        # take the Pillow path.
        self.batch_decoder: JpegBatchDecoder | None = None
        if (gpu_decode and self.device.type == "cuda" and self.runtime.name == "torch"
                and gpu_decoding_available(self.device)):
            self.batch_decoder = JpegBatchDecoder(self.preprocessor, self.device,
                                                workers=max(1, self.workers))
        elif (tensor_decode and self.device.type == "cpu" and self.workers > 0
              and self.loader == "thread"):
            self.batch_decoder = JpegBatchDecoder(self.preprocessor, self.device, workers=1)
        logger.info(
            "embedder: %s on %s with %s (%s), batch %d, %d %s loader workers",
            model.card.version if model.card else model.architecture, self.device,
            self.runtime.describe(), selection.reason, self.batch_size, self.workers,
            self.loader,
        )

    def _select_runtime(self, requested: str, batch_size: int | None, threads: int | None,
                        cache_dir: Path | None) -> Selection:
        function = PixelFunction(self.model, self.model.data_config)
        size = tuple(self.preprocessor.input_size)
        shape = (*size, 3)
        what = (f"embed:{self.model.architecture}:{size[0]}x{size[1]}:d{self.model.dim}:"
                f"{'blend' if self.model.blend else 'plain'}")

        def graph() -> ExportedGraph:
            return ensure_graph(
                function, name="embedding", directory=graph_directory(self.model, cache_dir),
                identity=graph_identity(self.model),
                check_pixels=reference_photos(self.preprocessor.from_image),
            )

        return select_runtime(
            requested, device=self.device, precision=self.precision, threads=threads,
            torch_function=lambda: function, graph=graph, input_shape=shape,
            batch_size=batch_size, cache_dir=cache_dir, what=what,
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
        """Vectors for decoded images (queries): float32, shape (len(images), dim).

        One image (a search query) takes the latency path: preprocessed in this
        thread, one call of the runtime's single-image path, no loader.
        """
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        if len(images) == 1:
            return self.embed_pixels(self.preprocessor.from_image(images[0]))
        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            pixels = torch.stack([self.preprocessor.from_image(im) for im in chunk])
            out.append(self._forward(pixels))
        return np.concatenate(out)

    def embed_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        """The vector of one preprocessed image (uint8 (H, W, 3), as the preprocessor
        makes it): the query's latency path, without decoding it again."""
        return self.runtime.run_one(pixels[None].numpy())

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
            # The runtime starts the next batch before this one's vectors are taken.
            for loaded, vectors in self.runtime.run_many(self._load(paths),
                                                         lambda loaded: loaded.pixels):
                if vectors is None:
                    vectors = np.zeros((0, self.dim), dtype=np.float32)
                bar.update(len(loaded.indices) + len(loaded.failures))
                yield EmbeddedBatch(loaded.indices, vectors, loaded.failures)
        finally:
            bar.close()

    def file_pixels(self, path: Path) -> torch.Tensor:
        """The uint8 HWC pixels (on the CPU) that :meth:`embed_paths` gives the model for
        a stored file: the same decoder, so a vector recomputed from them is the stored one.
        Raises ``ImageRejected`` with the reason embedding would record."""
        if self.batch_decoder is not None:
            loaded = self.batch_decoder.load([Path(path)], [0])
            if loaded.failures:
                raise ImageRejected(loaded.failures[0][1])
            return loaded.pixels[0].cpu()
        return self.preprocessor.from_path(Path(path))

    def _forward(self, pixels: torch.Tensor) -> np.ndarray:
        return self.runtime.run(pixels)

    def _load(self, paths: Sequence[Path]) -> Iterator[LoadedBatch]:
        if self.batch_decoder is not None:
            yield from self._load_jpeg_batches(paths)
            return
        yield from load_batches(paths, self.preprocessor, batch_size=self.batch_size,
                                workers=self.workers, loader=self.loader,
                                pin_memory=self.device.type == "cuda")

    def _load_jpeg_batches(self, paths: Sequence[Path]) -> Iterator[LoadedBatch]:
        """Decoded batches (:mod:`indexer.model.jpeg_decode`), the next one decoding in a
        loader thread while the model runs on this one."""
        decoder = self.batch_decoder

        def load(start: int) -> LoadedBatch:
            if self.device.type == "cpu":
                torch.set_num_threads(1)  # this loader thread's own: the runtime has the cores
            stop = min(start + self.batch_size, len(paths))
            return decoder.load(paths[start:stop], range(start, stop))

        yield from prefetched(range(0, len(paths), self.batch_size), load, 1, name="embed-decode")
