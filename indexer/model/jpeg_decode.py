"""JPEG batches decoded by torchvision on the model's device, resized and cropped there.

On a GPU the CPU decoders starve the model (an H200 ran lite0's forward pass at ~20,800
img/s and the CPU-decoding pipeline at ~440 img/s): there this is nvJPEG. On a CPU the
same code is libjpeg-turbo plus torch's vectorised uint8 resize, ~40% less CPU per
photo than Pillow's decode and resize, which an optimised runtime's forward pass on two
cores needs (:mod:`indexer.model.embed`). :class:`JpegBatchDecoder` hands the plain
JPEGs of a batch to ``torchvision.io.decode_jpeg`` and does timm's eval geometry on the
device; everything else takes the Pillow path, unchanged:

* **The CPU path stays the judge.** Only files whose header says "plain JPEG, RGB or
  greyscale, within the pixel limit, ends with an end-of-image marker" go to the device.
  Anything else, and anything the device decoder refuses, is decoded by
  ``Preprocessor.from_path``, so a rejected photo gets the same reason as on the CPU
  and a bad photo never fails the batch.
* **EXIF orientation is read from the header and applied here**, on the device:
  torchvision ignores ``apply_exif_orientation`` on CUDA (only its CPU decoder applies
  it), and one way for both devices keeps the CPU device an honest test of this code.
* **timm's eval geometry, in timm's order**: resize (shorter side to
  ``floor(input / crop_pct)``, antialiased bicubic, which follows Pillow's filter), then
  centre crop. Resizing the whole image costs ~1.3x the output pixels of resizing only
  the crop, but a crop box in source pixels is fractional and ``interpolate`` takes none.
* **The device is a parameter, not a special case**: on ``cpu`` the same code runs with
  torchvision's libjpeg-turbo decoder, which is how the tests run it without a GPU
  (only the resize keeps uint8 there, for torch's fast path).
"""

from __future__ import annotations

import functools
import io
import logging
import math
import os
import threading
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

from indexer.images import ImageRejected
from indexer.model.loading import LoadedBatch
from indexer.model.preprocess import Preprocessor

logger = logging.getLogger(__name__)

# torchvision 0.29 deprecates its decoders in favour of TorchCodec and warns on every
# call site; the warning says nothing about the image, so it is silenced once here.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities",
                        category=DeprecationWarning)

INTERPOLATIONS = ("bilinear", "bicubic")
DEFAULT_CROP_PCT = 0.875  # timm's default when a data config has none
DEFAULT_DECODE_PIXELS = 256_000_000  # per decode call: ~770 MB of decoded RGB on the device
_ORIENTATION = 0x0112  # the EXIF tag
_EOI = b"\xff\xd9"  # JPEG end-of-image marker
_TRAILING = b"\x00 \t\r\n"  # padding some writers leave after the end-of-image marker
_JPEG_MODES = ("RGB", "L")  # what Pillow calls YCbCr and greyscale JPEGs; not CMYK


@dataclass
class _Jpeg:
    position: int  # in this batch
    data: torch.Tensor  # the file's bytes, uint8, on the CPU (what decode_jpeg takes)
    height: int  # as stored, before orientation
    width: int
    orientation: int


class JpegBatchDecoder:
    """Batches of image files → uint8 NHWC pixels on ``device``, like the CPU Preprocessor's.

    From ``preprocessor`` it takes ``input_size``, ``max_pixels``, ``crop_pct`` and
    ``interpolation`` when it has them (the constructor's ``crop_pct`` and
    ``interpolation`` win; else timm's defaults), and ``from_path`` for every file the
    device does not decode. ``workers``: threads reading files and CPU fallbacks.
    ``decode_pixels``: at most this many stored pixels per decode call (device memory).
    Thread-safe: several threads may call :meth:`load` at once.
    """

    def __init__(
        self,
        preprocessor: Preprocessor,
        device: torch.device | str,
        *,
        crop_pct: float | None = None,
        interpolation: str | None = None,
        workers: int = 8,
        decode_pixels: int = DEFAULT_DECODE_PIXELS,
    ) -> None:
        crop_pct = crop_pct or getattr(preprocessor, "crop_pct", None) or DEFAULT_CROP_PCT
        interpolation = interpolation or getattr(preprocessor, "interpolation", None) or "bicubic"
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}; "
                             f"got {interpolation!r}")
        if not crop_pct > 0:
            raise ValueError(f"crop_pct must be > 0; got {crop_pct}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1; got {workers}")
        self.preprocessor = preprocessor
        self.device = torch.device(device)
        self.input_size: tuple[int, int] = tuple(preprocessor.input_size)  # (height, width)
        self.crop_pct = float(crop_pct)
        self.interpolation = interpolation
        self.workers = workers
        self.decode_pixels = decode_pixels
        # Pillow's own bomb guard (a warning made an error while the CPU path decodes)
        # is a second limit: a file over it would be rejected there, so it stays there.
        pillow_limit = Image.MAX_IMAGE_PIXELS or math.inf
        self.max_pixels = min(preprocessor.max_pixels, pillow_limit)
        self.counts: Counter[str] = Counter()  # device, header (CPU path), refused, failed
        self._counts_lock = threading.Lock()

    def load(self, paths: Sequence[Path], indices: Sequence[int]) -> LoadedBatch:
        """Decode ``paths`` (reported as ``indices``); failures come back with the CPU's reason."""
        if len(paths) != len(indices):
            raise ValueError(f"{len(paths)} paths but {len(indices)} indices")
        results: dict[int, torch.Tensor | str] = {}
        counts: Counter[str] = Counter()
        with self._pool() as pool:
            headers = list(pool.map(self._read, range(len(paths)), paths))
            # Files the header sends to the CPU start decoding there at once, while the
            # device decodes the rest.
            on_cpu: dict[int, Future[torch.Tensor | str]] = {
                i: pool.submit(self._on_cpu, paths[i])
                for i, jpeg in enumerate(headers) if jpeg is None
            }
            counts["header"] = len(on_cpu)
            for chunk in self._chunks([jpeg for jpeg in headers if jpeg is not None]):
                for jpeg, pixels in zip(chunk, self._decode(chunk, paths), strict=True):
                    if pixels is None:
                        counts["refused"] += 1
                        on_cpu[jpeg.position] = pool.submit(self._on_cpu, paths[jpeg.position])
                    else:
                        counts["device"] += 1
                        results[jpeg.position] = pixels
            for position, future in on_cpu.items():
                results[position] = future.result()

        kept, pixels, failures = [], [], []
        for position in range(len(paths)):
            result = results[position]
            if isinstance(result, str):
                failures.append((int(indices[position]), result))
            else:
                kept.append(int(indices[position]))
                pixels.append(result.to(self.device))
        counts["failed"] = len(failures)
        with self._counts_lock:
            self.counts.update(counts)
        return LoadedBatch(
            np.asarray(kept, dtype=np.int64),
            torch.stack(pixels) if pixels else None,
            failures,
        )

    def _pool(self) -> ThreadPoolExecutor | _InlineExecutor:
        # One worker (the CPU embedder's loader thread): a pool would only add a thread
        # start and a hand-over per file.
        if self.workers == 1:
            return _InlineExecutor()
        return ThreadPoolExecutor(self.workers, thread_name_prefix="gpu-decode")

    def _read(self, position: int, path: Path) -> _Jpeg | None:
        """The file's bytes if its header makes it a device JPEG, else None (the CPU decides)."""
        try:
            with Path(path).open("rb") as handle:  # into a bytearray: torch.frombuffer's, no copy
                data = bytearray(os.fstat(handle.fileno()).st_size)
                if handle.readinto(data) != len(data):
                    return None  # changed while read: the CPU path reads it again
        except OSError:
            return None  # the CPU path words the reason
        # A truncated upload: Pillow rejects it; nvJPEG might hand back a grey bottom.
        if not data.rstrip(_TRAILING).endswith(_EOI):
            return None
        try:
            with Image.open(io.BytesIO(data), formats=["JPEG"]) as image:
                if image.format != "JPEG" or image.mode not in _JPEG_MODES:
                    return None
                width, height = image.size
                orientation = image.getexif().get(_ORIENTATION, 1)
        except Exception:  # noqa: BLE001 - an unreadable header or EXIF: the CPU path judges
            return None
        if not (0 < width * height <= self.max_pixels):
            return None
        return _Jpeg(position, torch.frombuffer(data, dtype=torch.uint8),
                     height, width, orientation if isinstance(orientation, int) else 1)

    def _chunks(self, jpegs: list[_Jpeg]) -> Iterator[list[_Jpeg]]:
        chunk: list[_Jpeg] = []
        pixels = 0
        for jpeg in jpegs:
            if chunk and pixels + jpeg.height * jpeg.width > self.decode_pixels:
                yield chunk
                chunk, pixels = [], 0
            chunk.append(jpeg)
            pixels += jpeg.height * jpeg.width
        if chunk:
            yield chunk

    def _decode(self, chunk: list[_Jpeg], paths: Sequence[Path]) -> list[torch.Tensor | None]:
        """Model-ready HWC pixels on the device per JPEG, None where the device refused it."""
        decoded = self._decode_jpegs(chunk, paths)
        out: list[torch.Tensor | None] = []
        for jpeg, image in zip(chunk, decoded, strict=True):
            if image is None or tuple(image.shape) != (3, jpeg.height, jpeg.width):
                if image is not None:
                    logger.info("device decoded %s as %s, header said %dx%d; decoding on the CPU",
                                paths[jpeg.position], tuple(image.shape), jpeg.width, jpeg.height)
                out.append(None)
                continue
            try:
                out.append(self._eval_transform(_upright(image, jpeg.orientation)))
            except RuntimeError as exc:  # out of device memory, say: the CPU can still do it
                logger.warning("resizing %s on %s failed (%s); decoding on the CPU",
                               paths[jpeg.position], self.device, exc)
                out.append(None)
        return out

    def _decode_jpegs(self, chunk: list[_Jpeg], paths: Sequence[Path]
                      ) -> list[torch.Tensor | None]:
        # One call for the chunk (nvJPEG's batched decode); it returns nothing when one
        # file fails, so then each file alone finds the refusers.
        try:
            return list(self._decode_call([jpeg.data for jpeg in chunk]))
        except Exception as exc:  # noqa: BLE001 - decoders raise RuntimeError, others too
            if len(chunk) == 1:
                logger.info("device decoder refused %s (%s); decoding on the CPU",
                            paths[chunk[0].position], exc)
                return [None]
        out: list[torch.Tensor | None] = []
        for jpeg in chunk:
            try:
                out.append(self._decode_call([jpeg.data])[0])
            except Exception as exc:  # noqa: BLE001
                logger.info("device decoder refused %s (%s); decoding on the CPU",
                            paths[jpeg.position], exc)
                out.append(None)
        return out

    def _decode_call(self, data: list[torch.Tensor]) -> list[torch.Tensor]:
        # apply_exif_orientation stays False: CUDA ignores it, so _upright does it for both.
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=self.device)

    def _eval_transform(self, image: torch.Tensor) -> torch.Tensor:
        """(3, h, w) uint8 → (H, W, 3) uint8: timm's eval resize and centre crop."""
        return eval_resize_crop(image, self.input_size, self.crop_pct, self.interpolation)

    def _on_cpu(self, path: Path) -> torch.Tensor | str:
        try:
            return self.preprocessor.from_path(Path(path))
        except ImageRejected as exc:
            return exc.reason
        except Exception as exc:  # noqa: BLE001 - never lose the batch to one image
            logger.warning("unexpected error preprocessing %s", path, exc_info=True)
            return f"preprocessing failed: {type(exc).__name__}: {exc}"


class _InlineExecutor:
    """The part of ThreadPoolExecutor that :meth:`JpegBatchDecoder.load` uses, run in the
    calling thread."""

    def __enter__(self) -> _InlineExecutor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def map(self, function, *iterables):
        return map(function, *iterables)

    def submit(self, function, *args) -> Future:
        future: Future = Future()
        try:
            future.set_result(function(*args))
        except BaseException as exc:  # noqa: BLE001 - delivered by result(), as a pool would
            future.set_exception(exc)
        return future


def eval_resize_crop(image: torch.Tensor, input_size: tuple[int, int], crop_pct: float,
                     interpolation: str = "bicubic") -> torch.Tensor:
    """(3, h, w) uint8 on any device → (H, W, 3) uint8: timm's eval resize and centre crop."""
    height, width = image.shape[-2:]
    size = resized_size(height, width, input_size, crop_pct)
    x = image.unsqueeze(0)
    if size != (height, width):
        x = resize(x, size, interpolation)
    x = _centre_crop(x, input_size)
    if x.dtype != torch.uint8:
        x = x.round_().clamp_(0, 255).to(torch.uint8)
    return x[0].permute(1, 2, 0).contiguous()


def resize(x: torch.Tensor, size: tuple[int, int], interpolation: str = "bicubic"
           ) -> torch.Tensor:
    """Antialiased resize of (n, 3, h, w) uint8, as Pillow filters: uint8 in on a CPU,
    float out elsewhere (the caller rounds)."""
    if x.device.type == "cpu":
        # torch's uint8 channels_last antialiased resize is PIL's algorithm,
        # vectorised: 0.4 ms for a 348-px photo against ~1.2 ms for Pillow's.
        return F.interpolate(x.contiguous(memory_format=torch.channels_last), size=size,
                             mode=interpolation, antialias=True, align_corners=False)
    return F.interpolate(x.float(), size=size, mode=interpolation, antialias=True,
                         align_corners=False)


def resized_size(height: int, width: int, input_size: tuple[int, int],
                 crop_pct: float) -> tuple[int, int]:
    """The size timm's eval transform (crop_mode 'center') resizes an image to before cropping.

    Square targets: torchvision's ``Resize(int)``, the shorter side to
    ``floor(edge / crop_pct)`` and the longer one truncated; other targets: timm's
    ``ResizeKeepRatio``, the smaller ratio, rounded.
    """
    scale_h, scale_w = (math.floor(edge / crop_pct) for edge in input_size)
    if scale_h == scale_w:
        if width <= height:
            return int(scale_w * height / width), scale_w
        return scale_h, int(scale_h * width / height)
    ratio = min(height / scale_h, width / scale_w)
    return round(height / ratio), round(width / ratio)


def _centre_crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """torchvision's ``center_crop`` on (n, c, h, w): zero padding when smaller, then the crop."""
    crop_h, crop_w = size
    height, width = x.shape[-2:]
    if crop_h > height or crop_w > width:
        pad_w, pad_h = max(crop_w - width, 0), max(crop_h - height, 0)
        x = F.pad(x, (pad_w // 2, (pad_w + 1) // 2, pad_h // 2, (pad_h + 1) // 2))
        height, width = x.shape[-2:]
    top = int(round((height - crop_h) / 2.0))
    left = int(round((width - crop_w) / 2.0))
    return x[..., top : top + crop_h, left : left + crop_w]


def _upright(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """(c, h, w) turned as EXIF ``orientation`` says, like Pillow's ``exif_transpose``."""
    if orientation == 2:
        return image.flip(-1)
    if orientation == 3:
        return image.flip(-2, -1)
    if orientation == 4:
        return image.flip(-2)
    if orientation == 5:  # Pillow's TRANSPOSE
        return image.transpose(-2, -1)
    if orientation == 6:  # 90 degrees clockwise
        return image.rot90(-1, (-2, -1))
    if orientation == 7:  # Pillow's TRANSVERSE
        return image.transpose(-2, -1).flip(-2, -1)
    if orientation == 8:  # 90 degrees anticlockwise
        return image.rot90(1, (-2, -1))
    return image  # 1, or a value Pillow ignores too


def gpu_decoding_available(device: torch.device | str) -> bool:
    """True when ``device`` is a CUDA device whose JPEG decoder works (tried once, cached)."""
    device = torch.device(device)
    reason = _unavailable_reason(str(device))
    return reason is None


@functools.cache
def _unavailable_reason(device: str) -> str | None:
    reason = _probe(torch.device(device))
    if reason is None:
        logger.info("JPEG decoding on %s: available", device)
    else:
        logger.info("JPEG decoding on %s: unavailable (%s)", device, reason)
    return reason


def _probe(device: torch.device) -> str | None:
    if device.type != "cuda":
        return f"{device.type} is not a CUDA device"
    if not torch.cuda.is_available():
        return "CUDA is not available"
    buffer = io.BytesIO()
    Image.new("RGB", (16, 8), (200, 30, 60)).save(buffer, "JPEG", quality=95)
    data = torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)
    try:
        image = decode_jpeg([data], mode=ImageReadMode.RGB, device=device)[0]
        torch.cuda.synchronize(device)
    except Exception as exc:  # noqa: BLE001 - any failure means "not here"
        return f"decode_jpeg on {device} failed: {type(exc).__name__}: {exc}"
    if tuple(image.shape) != (3, 8, 16) or image.device.type != "cuda":
        return f"decode_jpeg on {device} returned {tuple(image.shape)} on {image.device}"
    if (image.float().mean((1, 2)).cpu() - torch.tensor([200.0, 30.0, 60.0])).abs().max() > 8:
        return f"decode_jpeg on {device} returned wrong colours"
    return None
