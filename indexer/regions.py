"""Region queries: a box of the query photo, read, checked against the photo, and cropped.

A box is ``(x0, y0, x1, y1)`` in the pixels of the image as displayed (after its EXIF
orientation, as :func:`indexer.images.load_image` returns it): ``x0, y0`` the top-left
corner, ``x1, y1`` the bottom-right one, exclusive, so ``(0, 0, width, height)`` is the
whole photo. Coordinates may be fractional (a browser converts from CSS pixels); the
crop is every pixel the box touches. The one place a box is refused is here, with
:class:`BadBox`: the CLI, the HTTP API and :meth:`indexer.engine.Lookalike.search`
all read boxes with :meth:`Box.of` and check them with :meth:`Box.pixels_in`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real

import numpy as np
from PIL import Image

MIN_BOX_SIDE = 16  # pixels: a smaller crop is upscaled into noise by the model's resize

_NUMBER = r"-?[0-9]+(?:\.[0-9]+)?"
#: The text form ``"x0,y0,x1,y1"`` (spaces allowed around the commas); the OpenAPI
#: document states the same pattern, so no string it refuses is accepted here.
BOX_PATTERN = rf"^ *{_NUMBER} *, *{_NUMBER} *, *{_NUMBER} *, *{_NUMBER} *$"
_BOX_TEXT = re.compile(BOX_PATTERN.removeprefix("^").removesuffix("$"))

PixelBox = tuple[int, int, int, int]


class BadBox(ValueError):
    """A query box that is not 4 numbers, is inverted, too small, or leaves its photo."""


def _show(value: float) -> str:
    return f"{value:g}"


@dataclass(frozen=True)
class Box:
    """A box of the query photo in pixels, never inverted nor under 16x16 (else :class:`BadBox`)."""

    x0: float
    y0: float
    x1: float
    y1: float

    def __post_init__(self) -> None:
        if self.x1 <= self.x0 or self.y1 <= self.y0:
            raise BadBox(f"box {self} is inverted: x1 must be greater than x0 "
                         "and y1 greater than y0")  # fmt: skip
        width, height = self.x1 - self.x0, self.y1 - self.y0
        if width < MIN_BOX_SIDE or height < MIN_BOX_SIDE:
            raise BadBox(f"box {self} is {_show(width)}x{_show(height)} pixels, smaller "
                         f"than the {MIN_BOX_SIDE}x{MIN_BOX_SIDE} minimum")  # fmt: skip

    @classmethod
    def of(cls, value: object) -> Box:
        """A box from ``"x0,y0,x1,y1"``, a sequence of 4 numbers or a :class:`Box`.

        Raises :class:`BadBox` for anything else, an inverted box, or one smaller than
        16x16 pixels; whether it fits the photo is :meth:`pixels_in`'s question.
        """
        if isinstance(value, Box):
            return value
        return cls(*_numbers(value))

    def pixels_in(self, width: int, height: int) -> PixelBox:
        """The pixels it covers in a ``width`` x ``height`` photo; :class:`BadBox` if outside."""
        if self.x0 < 0 or self.y0 < 0 or self.x1 > width or self.y1 > height:
            raise BadBox(f"box {self} is outside the {width}x{height} photo "
                         f"(x from 0 to {width}, y from 0 to {height})")  # fmt: skip
        return (math.floor(self.x0), math.floor(self.y0),
                math.ceil(self.x1), math.ceil(self.y1))  # fmt: skip

    def __str__(self) -> str:
        return f"({', '.join(_show(v) for v in (self.x0, self.y0, self.x1, self.y1))})"


def _numbers(value: object) -> tuple[float, float, float, float]:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, str):
        parts: object = value.split(",") if _BOX_TEXT.fullmatch(value) else None
        shown, form = repr(value[:60]), '"x0,y0,x1,y1"'
    else:
        parts = value if _four_reals(value) else None
        shown, form = repr(value), "[x0, y0, x1, y1]"
    try:
        numbers = tuple(float(part) for part in parts)  # type: ignore[union-attr]
    except (TypeError, OverflowError):  # not 4 parts, or an int beyond any float
        numbers = ()
    if len(numbers) != 4 or not all(math.isfinite(n) for n in numbers):
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise BadBox(f"box must be 4 numbers {form} in pixels, got {shown}")
    return numbers  # type: ignore[return-value]


def _four_reals(value: object) -> bool:
    return (isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray)
            and len(value) == 4
            and all(isinstance(v, Real) and not isinstance(v, bool) for v in value))  # fmt: skip


def crop(image: Image.Image, box: Box) -> tuple[Image.Image, PixelBox]:
    """The part of ``image`` under ``box``, and the pixel box cut; :class:`BadBox` if outside."""
    pixels = box.pixels_in(image.width, image.height)
    return image.crop(pixels), pixels


__all__ = ["BOX_PATTERN", "MIN_BOX_SIDE", "BadBox", "Box", "PixelBox", "crop"]
