"""A map as a scatter-plot PNG with Pillow: coloured dots on white, no photos, no matplotlib.

Dots are drawn at 4x the size and scaled down with a Lanczos filter, which
anti-aliases them. Colours: the 20 of matplotlib's ``tab20`` (distinct
neighbours), then hues a golden angle apart for the 21st group onwards.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

SUPERSAMPLE = 4
UNLABELLED = (170, 170, 170)
TAB20 = (
    "1f77b4", "aec7e8", "ff7f0e", "ffbb78", "2ca02c", "98df8a", "d62728", "ff9896",
    "9467bd", "c5b0d5", "8c564b", "c49c94", "e377c2", "f7b6d2", "7f7f7f", "c7c7c7",
    "bcbd22", "dbdb8d", "17becf", "9edae5",
)  # fmt: skip
COLOR_BY = ("cluster", "label")


def palette(n: int) -> list[tuple[int, int, int]]:
    """``n`` distinct colours: tab20 first, then golden-angle hues."""
    colours = [tuple(int(h[i : i + 2], 16) for i in (0, 2, 4)) for h in TAB20[:n]]
    golden = (math.sqrt(5) - 1) / 2
    for i in range(len(colours), n):
        hue = (0.13 + i * golden) % 1.0
        lightness = (0.42, 0.58, 0.5)[i % 3]
        r, g, b = colorsys.hls_to_rgb(hue, lightness, 0.75)
        colours.append((round(r * 255), round(g * 255), round(b * 255)))
    return colours


def default_color_by(data: dict) -> str:
    """'label' when any point has a label, else 'cluster'."""
    return "label" if any(p.get("label") for p in data["points"]) else "cluster"


def point_colours(data: dict, color_by: str) -> list[tuple[int, int, int]]:
    if color_by not in COLOR_BY:
        raise ValueError(f"color_by must be one of {', '.join(COLOR_BY)}, got {color_by!r}")
    points = data["points"]
    if color_by == "cluster":
        groups = sorted({int(p["cluster"]) for p in points})
        keys = [int(p["cluster"]) for p in points]
    else:
        groups = sorted({p["label"] for p in points if p.get("label")})
        keys = [p.get("label") for p in points]
    colour_of = dict(zip(groups, palette(len(groups)), strict=True))
    return [colour_of.get(key, UNLABELLED) for key in keys]


def dot_radius(n: int, size: int) -> float:
    """Dot radius in output pixels: larger for few points, at least 1.5."""
    return max(1.5, min(size / 120, size * 0.2 / math.sqrt(max(n, 1))))


@dataclass(frozen=True)
class PlotArea:
    """Where the unit square of a map lies on a ``size`` px image (output pixels)."""

    left: float
    top: float
    side: float

    def pixel(self, x: float, y: float) -> tuple[float, float]:
        """The pixel of map point (x, y); y grows upwards, as in the map's data."""
        return self.left + float(x) * self.side, self.top + (1.0 - float(y)) * self.side


def plot_area(size: int) -> PlotArea:
    """A title band on top, margins around, the square plot centred below the title."""
    title_height = round(size * 0.045)
    margin = round(size * 0.03)
    side = size - 2 * margin - title_height
    return PlotArea(left=(size - side) / 2, top=margin + title_height, side=side)


def draw_scatter(
    points: list[dict], colours: list[tuple[int, int, int]], size: int
) -> tuple[Image.Image, PlotArea]:
    """The dots of ``points`` (``x``, ``y`` in [0, 1]) on a white ``size`` px square."""
    if not 64 <= size <= 8000:
        raise ValueError(f"size must be 64 to 8000 pixels, got {size}")
    area = plot_area(size)
    big = size * SUPERSAMPLE
    canvas = Image.new("RGB", (big, big), "white")
    draw = ImageDraw.Draw(canvas)
    radius = dot_radius(len(points), size) * SUPERSAMPLE
    for point, colour in zip(points, colours, strict=True):
        x, y = area.pixel(point["x"], point["y"])
        cx, cy = x * SUPERSAMPLE, y * SUPERSAMPLE
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=colour)
    return canvas.resize((size, size), Image.Resampling.LANCZOS), area


def draw_title(image: Image.Image, title: str) -> None:
    size = image.width
    font = ImageFont.load_default(size=max(10, round(size * 0.018)))
    ImageDraw.Draw(image).text((round(size * 0.03), round(size * 0.015)), title,
                               fill=(60, 60, 60), font=font)  # fmt: skip


def render_png(data: dict, path: Path, *, size: int = 1000, color_by: str | None = None) -> Path:
    """Draw ``data`` (a map from :func:`indexer.maps.build_map`) as a ``size`` px PNG."""
    if not 64 <= size <= 8000:
        raise ValueError(f"size must be 64 to 8000 pixels, got {size}")
    color_by = color_by or default_color_by(data)
    colours = point_colours(data, color_by)
    points = data["points"]
    image, _ = draw_scatter(points, colours, size)
    draw_title(image, f"index {data['index_version']}  ·  {len(points)} of {data['total']} "
                      f"vectors  ·  coloured by {color_by}")  # fmt: skip
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", optimize=True)
    return path
