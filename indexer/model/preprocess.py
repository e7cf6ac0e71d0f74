"""Pixels for the model: a decoded photo in, uint8 pixels out, normalised on the device.

* **Preprocessing is timm's own eval transform** for the model's data config (so
  vectors match what the weights were trained with). Files are decoded by
  :func:`indexer.images.load_image` (the project's one decoder: format allow-list,
  pixel limit, EXIF orientation) in JPEG ``draft`` mode: a 4000-px catalogue photo is
  decoded straight at 1/2, 1/4 or 1/8 scale (never below the resize target), which is
  several times cheaper than a full decode.
* **One resampling, straight to HWC.** For timm's usual eval transform (resize the short
  side to ``input / crop_pct``, centre crop), the crop box is mapped back onto the
  photo and only that box is resampled, with the same filter: the same pixels as
  resize-then-crop (tested), a quarter fewer output pixels, and no CHW round trip.
  A 348-px Grocery photo went from 3.6 to 2.3 ms of CPU, which matters once the
  forward pass is an optimised runtime's (:mod:`indexer.model.runtime`).
* **uint8 until the device.** Loader workers hand over uint8 HWC pixels (4x less to
  copy than float); :class:`PixelNormalizer` normalises a whole batch on the device.
* **channels_last** end to end: the uint8 batch is stacked HWC, so the NCHW view the
  model gets is already channels_last, which oneDNN/cuDNN convolutions prefer.

Both classes run in loader workers (threads or processes), so they are picklable.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import timm.data
import torch
from PIL import Image

from indexer.images import load_image, to_rgb

DEFAULT_MAX_PIXELS = 40_000_000  # same default as Settings.max_image_pixels
_PIL_FILTERS = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


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
        self.crop_pct = float(crop_pct)
        self.interpolation = str(data_config.get("interpolation") or "bilinear")
        self.draft = draft
        self.max_pixels = max_pixels
        # The crop box resample replicates timm's transform only in its usual case.
        self._filter = (
            _PIL_FILTERS.get(self.interpolation)
            if data_config.get("crop_mode") in (None, "center") and size[0] == size[1]
            else None
        )
        self._scale_size = math.floor(int(size[0]) / self.crop_pct)

    def from_image(self, image: Image.Image) -> torch.Tensor:
        image = to_rgb(image)
        if self._filter is None:
            pixels = self.transform(image)
            return pixels.permute(1, 2, 0).contiguous()  # HWC: stacks into channels_last
        return torch.from_numpy(np.asarray(self._resample_crop(image)).copy())

    def crop_box(self, width: int, height: int) -> tuple[float, float, float, float]:
        """The part of a ``width`` x ``height`` photo the model sees, in its pixels.

        ``(x0, y0, x1, y1)`` of the eval transform's centre crop (resize the short side,
        crop the input size). Where the crop pads (an input bigger than the resize) the
        box reaches outside the photo.
        """
        target_h, target_w = self.input_size
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self._scale_size, int(self._scale_size * long / short)
        new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
        top = int(round((new_h - target_h) / 2.0))
        left = int(round((new_w - target_w) / 2.0))
        sx, sy = width / new_w, height / new_h
        return (left * sx, top * sy, (left + target_w) * sx, (top + target_h) * sy)

    def _resample_crop(self, image: Image.Image) -> Image.Image:
        """torchvision's Resize(short side) + CenterCrop, as one resample of the crop box."""
        box = self.crop_box(*image.size)
        if box[0] < 0 or box[1] < 0:  # the crop pads (input bigger than the resize): timm's way
            pixels = self.transform(image)
            return Image.fromarray(pixels.permute(1, 2, 0).numpy())
        target_h, target_w = self.input_size
        return image.resize((target_w, target_h), self._filter, box=box)

    def from_path(self, path: Path) -> torch.Tensor:
        return self.from_image(self.open(path))

    def open(self, path: Path) -> Image.Image:
        """Decode a stored image file, upright RGB; raises ImageRejected with a reason."""
        draft = self.draft_edge if self.draft else None
        return load_image(path, max_pixels=self.max_pixels, draft=draft).image


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
