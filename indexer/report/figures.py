"""The report's pictures, drawn with Pillow: the class map with its legend, and confused pairs.

The map reuses the catalogue map's scatter plot (:mod:`indexer.maps.png`) and
writes each class's name at its centre (:mod:`indexer.report.legend`); with few
classes a colour key sits beside it too. A pair's picture shows photos of the two
classes side by side with their similarity.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from indexer.images import ImageRejected, load_image
from indexer.maps.png import draw_scatter, draw_title, palette
from indexer.report.confusion import ConfusedPair, ExamplePair
from indexer.report.legend import class_centres, place_labels

log = logging.getLogger(__name__)

COLOUR_KEY_MAX = 20  # classes up to which the map gets a colour key (tab20's distinct colours)
TEXT = (40, 40, 40)
MUTED = (110, 110, 110)
CELL_BACKGROUND = (243, 243, 243)


def class_colours(names: list[str]) -> dict[str, tuple[int, int, int]]:
    """One colour per class, in sorted-name order (as the map and the pairs use them)."""
    ordered = sorted(set(names))
    return dict(zip(ordered, palette(len(ordered)), strict=True))


def font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def darker(colour: tuple[int, int, int], keep: float = 0.55) -> tuple[int, int, int]:
    """The colour mixed with black: readable as text on white."""
    return tuple(round(c * keep) for c in colour)


def fit_text(text: str, width: float, face: ImageFont.FreeTypeFont) -> str:
    """``text``, shortened with an ellipsis until it is at most ``width`` pixels wide."""
    if face.getlength(text) <= width:
        return text
    while text and face.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"


@dataclass(frozen=True)
class PlacedName:
    """A class name on the map: its centre's pixel and where the name was written."""

    name: str
    centre: tuple[float, float]
    at: tuple[float, float]


def render_class_map(
    xy: np.ndarray, labels: np.ndarray, path: Path, *, title: str, size: int = 1400
) -> list[PlacedName]:
    """The 2-D layout ``xy`` (in [0, 1]) as dots coloured by class, names at class centres."""
    labels = np.asarray(labels)
    colours = class_colours([str(label) for label in labels])
    points = [{"x": float(x), "y": float(y)} for x, y in xy]
    image, area = draw_scatter(points, [colours[str(label)] for label in labels], size)
    draw_title(image, title)
    centres = sorted(class_centres(xy, labels), key=lambda c: (-c.size, c.name))
    if len(centres) <= COLOUR_KEY_MAX:
        image = _with_colour_key(image, centres, colours)
    draw = ImageDraw.Draw(image)
    face = font(max(11, round(size * 0.0125)))
    pad = 3
    anchors = [area.pixel(c.x, c.y) for c in centres]
    boxes = []
    for centre in centres:
        left, top, right, bottom = face.getbbox(centre.name)
        boxes.append((right - left + 2 * pad, bottom - top + 2 * pad))
    bounds = (0.0, area.top, float(size), float(size))
    placed = place_labels(anchors, boxes, bounds)
    names = []
    for centre, anchor, (x, y) in zip(centres, anchors, placed, strict=True):
        colour = colours[centre.name]
        if abs(y - anchor[1]) > 1 or abs(x - anchor[0]) > 1:  # moved clear: tie it to its centre
            draw.line((anchor, (x, y)), fill=darker(colour), width=1)
            draw.ellipse((anchor[0] - 3, anchor[1] - 3, anchor[0] + 3, anchor[1] + 3),
                         fill=darker(colour), outline="white")
        draw.text((x, y), centre.name, font=face, anchor="mm", fill=darker(colour),
                  stroke_width=3, stroke_fill="white")
        names.append(PlacedName(centre.name, anchor, (x, y)))
    image.save(Path(path), format="PNG", optimize=True)
    return names


def _with_colour_key(image: Image.Image, centres, colours) -> Image.Image:
    """``image`` widened by a column of colour swatches and class names."""
    size = image.height
    face = font(max(11, round(size * 0.012)))
    line = round(face.size * 1.7)
    width = round(size * 0.28)
    wide = Image.new("RGB", (size + width, size), "white")
    wide.paste(image, (0, 0))
    draw = ImageDraw.Draw(wide)
    top = round(size * 0.08)
    for number, centre in enumerate(sorted(centres, key=lambda c: c.name)):
        y = top + number * line
        swatch = round(face.size * 0.9)
        draw.rectangle((size, y, size + swatch, y + swatch), fill=colours[centre.name])
        text = fit_text(f"{centre.name} ({centre.size})", width - swatch - 24, face)
        draw.text((size + swatch + 8, y + swatch / 2), text, font=face, anchor="lm", fill=TEXT)
    return wide


def render_pair(
    pair: ConfusedPair,
    examples: list[ExamplePair],
    paths: list[Path],
    colours: dict[str, tuple[int, int, int]],
    path: Path,
    *,
    max_pixels: int,
    thumb: int = 200,
) -> Path:
    """Each example as a row: a photo of ``pair.first``, its similarity, a photo of ``pair.second``.

    Under each photo: its class and its similarity to its own class's nearest other
    photo; where the other class's photo is nearer than that, the middle figure is red.
    """
    pad, gap = 16, 110
    face, small, big = font(14), font(12), font(22)
    caption = round(face.size * 1.5 + small.size * 1.5)
    header = round(face.size * 3.2)
    row_height = thumb + caption + pad
    width = 2 * pad + 2 * thumb + gap
    image = Image.new("RGB", (width, header + len(examples) * row_height + pad), "white")
    draw = ImageDraw.Draw(image)
    draw.text((pad, pad), fit_text(f"{pair.first}  vs  {pair.second}", width - 2 * pad, face),
              font=face, fill=TEXT)
    for number, example in enumerate(examples):
        top = header + number * row_height
        sides = ((pad, pair.first, example.row, example.own_best),
                 (pad + thumb + gap, pair.second, example.other_row, example.other_own_best))
        for left, name, row, own_best in sides:
            _paste_photo(image, paths[row], (left, top), thumb, colours[name], max_pixels)
            draw.text((left, top + thumb + 4), fit_text(name, thumb, face), font=face,
                      fill=darker(colours[name]))
            draw.text((left, top + thumb + 4 + round(face.size * 1.5)),
                      f"nearest of its class {own_best:.2f}", font=small, fill=MUTED)
        middle = pad + thumb + gap / 2
        beaten = example.similarity > min(example.own_best, example.other_own_best)
        draw.text((middle, top + thumb / 2 - 4), f"{example.similarity:.2f}", font=big,
                  anchor="ms", fill=(200, 40, 40) if beaten else TEXT)
        draw.text((middle, top + thumb / 2 + 4), "similarity", font=small, anchor="mt",
                  fill=MUTED)
    path = Path(path)
    image.save(path, format="PNG", optimize=True)
    return path


def _paste_photo(image: Image.Image, source: Path, at: tuple[int, int], thumb: int,
                 border: tuple[int, int, int], max_pixels: int) -> None:
    """The photo fitted into a ``thumb`` px square with a class-coloured frame."""
    left, top = at
    draw = ImageDraw.Draw(image)
    draw.rectangle((left - 3, top - 3, left + thumb + 2, top + thumb + 2), fill=border)
    draw.rectangle((left, top, left + thumb - 1, top + thumb - 1), fill=CELL_BACKGROUND)
    try:
        photo = load_image(source, max_pixels=max_pixels, draft=thumb).image
    except ImageRejected as error:  # moved or changed since it was embedded
        log.warning("report: cannot show %s: %s", source, error.reason)
        draw.text((left + thumb / 2, top + thumb / 2), "photo unavailable", font=font(12),
                  anchor="mm", fill=MUTED)
        return
    photo.thumbnail((thumb, thumb), Image.Resampling.LANCZOS)
    image.paste(photo, (left + (thumb - photo.width) // 2, top + (thumb - photo.height) // 2))
