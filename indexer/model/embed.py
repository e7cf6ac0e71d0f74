"""Fast batched embedding: image files or PIL images in, float32 unit vectors out.

Why it is shaped like this:

* **Decoding overlaps the forward pass.** Loader workers (threads on CPU, processes
  through a torch ``DataLoader`` on CUDA) decode and resize the next batches while the
  model runs. Workers hand over *uint8* pixels (4x less to copy than float);
  normalisation to the model's mean/std happens batch-wise on the device.
* **Preprocessing is timm's own eval transform** for the model's data config (so
  vectors match what the weights were trained with), preceded by PIL's JPEG ``draft``
  mode: a 4000-px catalogue photo is decoded straight at 1/2, 1/4 or 1/8 scale (never
  below the resize target), which is several times cheaper than a full decode.
* **channels_last** end to end: the uint8 batch is stacked HWC, so the NCHW view the
  model gets is already channels_last, which oneDNN/cuDNN convolutions prefer.
* **Precision** 'auto' is fp16 autocast on CUDA, bf16 autocast on a CPU with native
  bf16 (AVX512-BF16 / AMX), else fp32: emulated bf16 ran 11x slower than fp32 on an
  AVX2 machine. Vectors are normalised in float32 whatever the compute precision.
* **A bad image never loses the batch**: decode failures come back in
  ``EmbeddedBatch.failures`` with a reason; the catalog records it on the item.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import timm.data
import torch
from PIL import Image, ImageOps
from tqdm import tqdm

from indexer.images import ALLOWED_FORMATS, ImageRejected, to_rgb
from indexer.model.modeldir import EmbeddingModel

logger = logging.getLogger(__name__)

Device = Literal["auto", "cpu", "cuda"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
LoaderKind = Literal["auto", "process", "thread"]
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
LOADERS = ("auto", "process", "thread")
DEFAULT_MAX_PIXELS = 40_000_000  # same default as Settings.max_image_pixels


@dataclass
class EmbeddedBatch:
    """One batch of results. ``indices`` are positions in the input sequence."""

    indices: np.ndarray  # int64, shape (n,)
    vectors: np.ndarray  # float32, shape (n, dim), L2-normalised rows
    failures: list[tuple[int, str]] = field(default_factory=list)  # (position, reason)


# ---------------------------------------------------------------------------------------
# Device, precision, workers


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device must be one of auto, cpu, cuda; got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return torch.device(device)


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 in hardware (AVX512-BF16 or AMX-BF16).

    Without it oneDNN emulates bf16 through fp32 and runs slower than plain fp32.
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def autocast_context(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_workers(workers: int, device: torch.device) -> int:
    """-1: enough loader workers to keep the model busy, without starving it of cores.

    On CPU the forward pass needs the cores: decoding a catalogue JPEG costs a few ms
    against tens of ms of forward per image, so one worker per ~8 cores keeps up.
    On CUDA the GPU outruns decoding: use most cores.
    """
    if workers < -1:
        raise ValueError(f"workers must be >= -1 (-1: automatic); got {workers}")
    if workers >= 0:
        return workers
    cores = usable_cores()
    if device.type == "cuda":
        return max(1, min(8, cores - 1))
    return 0 if cores < 2 else max(1, min(4, cores // 8))


def auto_torch_threads(workers: int, device: torch.device) -> int | None:
    """Torch threads that leave the loader workers a core each, when cores are plenty.

    With few cores (fewer than 4) a core given to the loader costs the forward pass more
    than the loader's occasional pre-emption of a torch thread: on 2 cores, 1 torch
    thread made the forward ~1.4x slower while decoding a 348-px JPEG takes ~3 ms
    against ~40 ms of forward per image. So there torch keeps its threads (None: leave
    the setting alone). Never raises torch's own choice; CUDA leaves it alone.
    """
    cores = usable_cores()
    if device.type != "cpu" or workers == 0 or cores < 4:
        return None
    return max(1, min(torch.get_num_threads(), cores - workers))


# ---------------------------------------------------------------------------------------
# Preprocessing (runs in loader workers: module-level and picklable)


class Preprocessor:
    """Path or PIL image → uint8 HWC tensor, with timm's eval transform for ``data_config``."""

    def __init__(self, data_config: dict, *, draft: bool = True,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        config = {k: v for k, v in data_config.items()
                  if k in ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")}
        # use_prefetcher=True: geometric ops + PIL→uint8 tensor; normalisation is batch-wise.
        self.transform: Callable = timm.data.create_transform(
            **config, is_training=False, use_prefetcher=True
        )
        size = data_config["input_size"][-2:]
        self.input_size: tuple[int, int] = (int(size[0]), int(size[1]))  # (height, width)
        crop_pct = data_config.get("crop_pct") or 0.875
        # The largest edge any eval resize needs; draft never decodes below it.
        self.draft_edge = int(max(size) / min(crop_pct, 1.0)) + 1
        self.draft = draft
        self.max_pixels = max_pixels

    def from_image(self, image: Image.Image) -> torch.Tensor:
        pixels = self.transform(to_rgb(image))
        return pixels.permute(1, 2, 0).contiguous()  # HWC: stacks into channels_last

    def from_path(self, path: Path) -> torch.Tensor:
        return self.from_image(self.open(path))

    def open(self, path: Path) -> Image.Image:
        """Decode a stored image file, upright RGB; raises ImageRejected with a reason.

        Like ``indexer.images.load_image`` (same formats, pixel limit, EXIF handling) but
        reads from the path and lets JPEGs decode at reduced scale, which ``load_image``
        (bytes in, full-size image out, as intake needs) cannot.
        """
        try:
            image = Image.open(path, formats=list(ALLOWED_FORMATS))
        except FileNotFoundError:
            raise ImageRejected(f"file not found: {path}") from None
        except Image.DecompressionBombError:
            raise ImageRejected(f"image too large: exceeds limit {self.max_pixels}") from None
        except Exception as exc:  # noqa: BLE001 - Pillow raises many types on bad data
            raise ImageRejected(f"not a readable image: {exc}") from None
        with image:
            width, height = image.size
            if width * height > self.max_pixels:
                raise ImageRejected(
                    f"image too large: {width}x{height} pixels exceeds limit {self.max_pixels}"
                )
            if self.draft and image.format == "JPEG":
                image.draft("RGB", (self.draft_edge, self.draft_edge))
            try:
                image.load()
                upright = _exif_upright(image)
                return to_rgb(upright)
            except Exception as exc:  # noqa: BLE001
                message = str(exc) or type(exc).__name__
                if "truncated" in message.lower() or isinstance(exc, EOFError):
                    raise ImageRejected("truncated image data") from None
                raise ImageRejected(f"corrupt image data: {message}") from None


def _exif_upright(image: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image)
    except Exception as exc:  # noqa: BLE001 - broken EXIF is not worth losing a picture
        logger.debug("ignoring unreadable EXIF orientation: %s", exc)
        return image


@dataclass
class _Loaded:
    """What a loader hands the model: stacked uint8 pixels plus bookkeeping."""

    indices: np.ndarray
    pixels: torch.Tensor | None  # (n, H, W, 3) uint8, None when every image failed
    failures: list[tuple[int, str]]

    def pin_memory(self) -> _Loaded:  # DataLoader(pin_memory=True) calls this
        if self.pixels is not None:
            self.pixels = self.pixels.pin_memory()
        return self


class _PathDataset(torch.utils.data.Dataset):
    def __init__(self, paths: Sequence[Path], preprocessor: Preprocessor) -> None:
        self.paths = paths
        self.preprocessor = preprocessor

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str | None]:
        return _load_one(self.preprocessor, self.paths[index], index)


def _load_one(
    preprocessor: Preprocessor, path: Path, index: int
) -> tuple[int, torch.Tensor | None, str | None]:
    try:
        return index, preprocessor.from_path(Path(path)), None
    except ImageRejected as exc:
        return index, None, exc.reason
    except Exception as exc:  # noqa: BLE001 - never lose the batch to one image
        logger.warning("unexpected error preprocessing %s", path, exc_info=True)
        return index, None, f"preprocessing failed: {type(exc).__name__}: {exc}"


def _collate(items: Iterable[tuple[int, torch.Tensor | None, str | None]]) -> _Loaded:
    indices, pixels, failures = [], [], []
    for index, tensor, reason in items:
        if tensor is None:
            failures.append((index, reason or "unknown error"))
        else:
            indices.append(index)
            pixels.append(tensor)
    return _Loaded(
        np.asarray(indices, dtype=np.int64),
        torch.stack(pixels) if pixels else None,
        failures,
    )


class PixelNormalizer:
    """uint8 NHWC pixels → normalised float NCHW on the device (a channels_last view)."""

    def __init__(self, data_config: dict, device: torch.device) -> None:
        mean = torch.tensor(data_config["mean"], dtype=torch.float32) * 255.0
        std = torch.tensor(data_config["std"], dtype=torch.float32) * 255.0
        self.mean = mean.view(1, -1, 1, 1).to(device)
        self.inv_std = (1.0 / std).view(1, -1, 1, 1).to(device)
        self.device = device

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        # (n, H, W, C) uint8 → (n, C, H, W) view: channels_last memory, no copy.
        x = pixels.to(self.device, non_blocking=True).permute(0, 3, 1, 2)
        return (x.float() - self.mean) * self.inv_std


# ---------------------------------------------------------------------------------------
# The embedder


class Embedder:
    """Runs an :class:`EmbeddingModel` over files or images, in batches, on one device.

    ``workers``: loader workers (-1: automatic, 0: decode in the calling thread).
    ``loader``: 'process' (torch DataLoader worker processes), 'thread' (a thread pool:
    Pillow releases the GIL while decoding and resizing), or 'auto' (see
    :meth:`_choose_loader`). ``threads``: torch intra-op threads (None: see
    :func:`auto_torch_threads`). ``draft``: decode big JPEGs at reduced scale.
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
        if loader not in LOADERS:
            raise ValueError(f"loader must be one of {', '.join(LOADERS)}; got {loader!r}")
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.batch_size = batch_size
        self.workers = resolve_workers(workers, self.device)
        self.loader = self._choose_loader(loader, self.device)
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

    @staticmethod
    def _choose_loader(loader: str, device: torch.device) -> str:
        """'auto': threads on CPU, processes on CUDA.

        On CPU one loader worker suffices and threads measured as fast as a worker
        process or faster (no start-up per call, no pickling of pixels; Pillow and torch
        both release the GIL). A GPU needs many decoders, and many threads would contend
        for the GIL. A daemonic process (a worker of some process pools) may not start
        children, so it always gets threads.
        """
        daemonic = multiprocessing.current_process().daemon
        if loader == "process" and daemonic:
            logger.info("embedder: daemonic process, using a thread loader instead")
        if loader == "auto":
            loader = "process" if device.type == "cuda" else "thread"
        return "thread" if daemonic else loader

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

    def _load(self, paths: Sequence[Path]) -> Iterator[_Loaded]:
        if self.workers == 0:
            for start in range(0, len(paths), self.batch_size):
                stop = min(start + self.batch_size, len(paths))
                yield _collate(
                    _load_one(self.preprocessor, paths[i], i) for i in range(start, stop)
                )
        elif self.loader == "thread":
            yield from self._load_threads(paths)
        else:
            yield from self._load_processes(paths)

    def _load_processes(self, paths: Sequence[Path]) -> Iterator[_Loaded]:
        # A loader lives for one call and is iterated once, so persistent_workers would
        # buy nothing; workers start by fork in ~10 ms each on Linux.
        loader = torch.utils.data.DataLoader(
            _PathDataset(list(paths), self.preprocessor),
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.workers,
            collate_fn=_collate,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=2,
        )
        yield from loader

    def _load_threads(self, paths: Sequence[Path]) -> Iterator[_Loaded]:
        """Keep ``workers + 1`` batches in flight; Pillow decodes without holding the GIL."""
        starts = iter(range(0, len(paths), self.batch_size))
        pending: deque[Future[_Loaded]] = deque()
        with ThreadPoolExecutor(self.workers, thread_name_prefix="embed-load") as pool:

            def submit() -> None:
                start = next(starts, None)
                if start is not None:
                    stop = min(start + self.batch_size, len(paths))
                    chunk = [(paths[i], i) for i in range(start, stop)]
                    pending.append(pool.submit(self._load_chunk, chunk))

            for _ in range(self.workers + 1):
                submit()
            while pending:
                loaded = pending.popleft().result()
                submit()
                yield loaded

    def _load_chunk(self, chunk: list[tuple[Path, int]]) -> _Loaded:
        loaded = _collate(_load_one(self.preprocessor, p, i) for p, i in chunk)
        if loaded.pixels is not None and self.device.type == "cuda":
            loaded.pixels = loaded.pixels.pin_memory()
        return loaded
