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
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageEnhance

from indexer.model.preprocess import Preprocessor

CROP_AREA = (0.3, 1.0)
CROP_ASPECT = (3 / 4, 4 / 3)
JITTER = 0.2


def view_rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


def random_view(image: Image.Image, preprocessor: Preprocessor, rng: np.random.Generator,
                ) -> torch.Tensor:
    """A random crop, flip and jitter of ``image`` at the model's input size (uint8 HWC)."""
    height, width = preprocessor.input_size
    crop = _random_crop_box(image.size, rng)
    view = image.resize((width, height), Image.Resampling.BICUBIC, box=crop)
    if rng.random() < 0.5:
        view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        view = enhancer(view).enhance(1.0 + rng.uniform(-JITTER, JITTER))
    return torch.from_numpy(np.asarray(view, dtype=np.uint8).copy())


def fixed_view(image: Image.Image, preprocessor: Preprocessor, view: int) -> torch.Tensor:
    """View 0: the evaluation transform; view 1: the same, mirrored."""
    if view == 1:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return preprocessor.from_image(image)


def make_view(image: Image.Image, preprocessor: Preprocessor, view: int,
              rng: np.random.Generator) -> torch.Tensor:
    return fixed_view(image, preprocessor, view) if view < 2 else random_view(
        image, preprocessor, rng)


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
