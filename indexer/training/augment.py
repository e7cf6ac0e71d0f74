"""Training views of a photo, drawn from an explicit random generator.

timm's training transforms draw from Python's and torch's global random state, which
loader threads share; these draw from a ``numpy.random.Generator`` seeded per
(run seed, epoch or view, image), so a view is the same on every run and a resumed
run sees exactly the views the uninterrupted one would have.

View 0 is the evaluation transform itself and view 1 its mirror image: the trained
model then sees what the embedder will show it. Further views are random resized
crops (area 30-100 %, aspect 3/4-4/3, as in ImageNet training but milder, since a
product must stay recognisable), mirrored half the time, with mild brightness,
contrast and colour jitter (shop photos differ in lighting far more than in hue).

The views are made with torch on uint8 tensors (antialiased resize as Pillow filters,
jitter as Pillow's enhancers), ~3x less CPU than with Pillow: the trunk cache runs on
an optimised runtime, and with two cores the loader had become its limit.
:func:`photo_views` makes all the views of one photo from a single decode.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from indexer.model.jpeg_decode import eval_resize_crop, resize
from indexer.model.preprocess import Preprocessor

CROP_AREA = (0.3, 1.0)
CROP_ASPECT = (3 / 4, 4 / 3)
JITTER = 0.2


def view_rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


def _chw(image: Image.Image) -> torch.Tensor:
    """An RGB PIL image as a (1, 3, h, w) uint8 tensor."""
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).unsqueeze(0)


def _jitter(x: torch.Tensor, brightness: float, contrast: float, colour: float) -> torch.Tensor:
    """Pillow's Brightness, Contrast and Color enhancers, in that order, on float (3, h, w).

    All three are affine in the pixels given the luma, so they fold into one pass:
    ``b·c·(k·x + (1-k)·grey) + (1-c)·mean`` (clamped once, not after each enhancer).
    """
    grey = torch.tensordot(_LUMA, x, dims=1)  # Pillow's L: ITU-R 601-2 luma, (h, w)
    mean = brightness * float(grey.mean())
    scale = brightness * contrast
    out = x.mul_(scale * colour).add_(grey.mul_(scale * (1 - colour)))
    return out.add_((1 - contrast) * mean).clamp_(0, 255)


_LUMA = torch.tensor([0.299, 0.587, 0.114])


def random_view(image: Image.Image | torch.Tensor, preprocessor: Preprocessor,
                rng: np.random.Generator) -> torch.Tensor:
    """A random crop, flip and jitter of ``image`` at the model's input size (uint8 HWC)."""
    x = _chw(image) if isinstance(image, Image.Image) else image
    height, width = preprocessor.input_size
    left, top, right, bottom = _random_crop_box((x.shape[-1], x.shape[-2]), rng)
    # Whole pixels: the box is random anyway, and torch's resize takes no fractions.
    left, top = int(left), int(top)
    right, bottom = max(left + 1, round(right)), max(top + 1, round(bottom))
    view = resize(x[..., top:bottom, left:right], (height, width),
                  preprocessor.interpolation)[0].float()
    if rng.random() < 0.5:
        view = view.flip(-1)
    view = _jitter(view, *(1.0 + rng.uniform(-JITTER, JITTER) for _ in range(3)))
    return view.round_().to(torch.uint8).permute(1, 2, 0).contiguous()


def fixed_view(image: Image.Image | torch.Tensor, preprocessor: Preprocessor, view: int
               ) -> torch.Tensor:
    """View 0: the evaluation transform; view 1: the same, mirrored."""
    x = _chw(image) if isinstance(image, Image.Image) else image
    pixels = eval_resize_crop(x[0], preprocessor.input_size, preprocessor.crop_pct,
                              preprocessor.interpolation)
    return pixels.flip(1).contiguous() if view == 1 else pixels


def make_view(image: Image.Image, preprocessor: Preprocessor, view: int,
              rng: np.random.Generator) -> torch.Tensor:
    return fixed_view(image, preprocessor, view) if view < 2 else random_view(
        image, preprocessor, rng)


def photo_views(image: Image.Image, preprocessor: Preprocessor, views: list[int],
                rng_of: Callable[[int], np.random.Generator]) -> list[torch.Tensor]:
    """``make_view`` for each of ``views`` of one photo, sharing its decode and eval resize."""
    x = _chw(image)
    plain = fixed_view(x, preprocessor, 0) if any(v < 2 for v in views) else None
    out = []
    for view in views:
        if view == 0:
            out.append(plain)
        elif view == 1:
            out.append(plain.flip(1).contiguous())
        else:
            out.append(random_view(x, preprocessor, rng_of(view)))
    return out


def _random_crop_box(size: tuple[int, int], rng: np.random.Generator
                     ) -> tuple[float, float, float, float]:
    width, height = size
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(*CROP_AREA)
        aspect = math.exp(rng.uniform(math.log(CROP_ASPECT[0]), math.log(CROP_ASPECT[1])))
        w = math.sqrt(target * aspect)
        h = math.sqrt(target / aspect)
        if w <= width and h <= height:
            left = rng.uniform(0, width - w)
            top = rng.uniform(0, height - h)
            return (left, top, left + w, top + h)
    side = min(width, height)  # fall back to the central square
    return ((width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2)
