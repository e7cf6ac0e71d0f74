"""A generated sample catalogue for the demo: synthetic, not photographs.

Each "product" is a coloured, patterned object (a shape with stripes or dots)
photographed several times against different backgrounds, positions, sizes,
rotations and lighting. That is enough for the demo to show that the search
finds other shots of the same product; real quality figures come from real
photos (see the README's evaluation section).
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SHAPES = ("circle", "square", "triangle", "bottle", "box")
PATTERNS = ("plain", "stripes", "dots", "band")


@dataclass(frozen=True)
class SampleProduct:
    name: str
    shape: str
    pattern: str
    colour: tuple[int, int, int]
    accent: tuple[int, int, int]


def sample_products(count: int, seed: int = 0) -> list[SampleProduct]:
    rng = np.random.default_rng(seed)
    products = []
    for number in range(count):
        hue = (number / count + rng.uniform(-0.02, 0.02)) % 1.0
        colour = _rgb(hue, 0.75, 0.85)
        accent = _rgb((hue + 0.5) % 1.0, 0.6, 0.95)
        shape = SHAPES[number % len(SHAPES)]
        pattern = PATTERNS[(number // len(SHAPES)) % len(PATTERNS)]
        products.append(SampleProduct(f"product-{number:03d}", shape, pattern, colour, accent))
    return products


def render_shot(product: SampleProduct, rng: np.random.Generator, size: int = 320) -> Image.Image:
    """One "photo" of ``product``: random background, placement, rotation and light."""
    background = _background(rng, size)
    layer = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    extent = int(size * rng.uniform(0.35, 0.6))
    left = int(rng.uniform(0.05, 0.95) * (size - extent))
    top = int(rng.uniform(0.05, 0.95) * (size - extent))
    box = (left, top, left + extent, top + extent)
    _draw_shape(draw, product.shape, box, product.colour)
    _draw_pattern(draw, product.pattern, box, product.accent, extent)
    mask = Image.new("L", (size, size), 0)
    _draw_shape(ImageDraw.Draw(mask), product.shape, box, 255)
    layer.putalpha(Image.composite(layer.getchannel("A"), mask, mask))
    layer = layer.rotate(float(rng.uniform(-25, 25)), resample=Image.BICUBIC, center=_centre(box))
    background.alpha_composite(layer)
    photo = background.convert("RGB").filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.2)))
    pixels = np.asarray(photo, dtype=np.float32) * rng.uniform(0.75, 1.2)
    pixels += rng.normal(0, 4, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_sample_catalogue(
    directory: Path, products: int = 12, shots: int = 6, seed: int = 0
) -> list[Path]:
    """Write ``products`` × ``shots`` JPEGs as ``directory/<product>/<shot>.jpg``."""
    rng = np.random.default_rng(seed)
    written = []
    for product in sample_products(products, seed):
        folder = Path(directory) / product.name
        folder.mkdir(parents=True, exist_ok=True)
        for shot in range(shots):
            path = folder / f"shot-{shot:02d}.jpg"
            render_shot(product, rng).save(path, quality=90)
            written.append(path)
    return written


def _rgb(hue: float, saturation: float, value: float) -> tuple[int, int, int]:
    red, green, blue = colorsys.hsv_to_rgb(hue, saturation, value)
    return int(red * 255), int(green * 255), int(blue * 255)


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    start, end = rng.uniform(90, 235, 3), rng.uniform(90, 235, 3)
    ramp = np.linspace(0, 1, size)[:, None, None]
    pixels = start * (1 - ramp) + end * ramp + rng.normal(0, 6, (size, size, 3))
    pixels = np.broadcast_to(pixels, (size, size, 3))
    if rng.random() < 0.5:
        pixels = pixels.transpose(1, 0, 2)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).convert("RGBA")


def _centre(box: tuple[int, int, int, int]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box, fill) -> None:
    left, top, right, bottom = box
    width = right - left
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([(left, bottom), (right, bottom), ((left + right) / 2, top)], fill=fill)
    elif shape == "bottle":
        neck = width // 3
        draw.rectangle((left + neck, top, right - neck, top + width // 3), fill=fill)
        draw.rounded_rectangle((left + width // 8, top + width // 4, right - width // 8, bottom),
                               radius=width // 6, fill=fill)
    else:  # box: a tall carton
        draw.rectangle((left + width // 5, top, right - width // 5, bottom), fill=fill)


def _draw_pattern(draw: ImageDraw.ImageDraw, pattern: str, box, colour, extent: int) -> None:
    left, top, right, bottom = box
    step = max(extent // 6, 4)
    if pattern == "stripes":
        for y in range(top, bottom, step * 2):
            draw.rectangle((left, y, right, y + step), fill=colour)
    elif pattern == "dots":
        radius = max(step // 3, 2)
        for y in range(top + step // 2, bottom, step):
            for x in range(left + step // 2, right, step):
                draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)
    elif pattern == "band":
        middle = (top + bottom) // 2
        draw.rectangle((left, middle - step, right, middle + step), fill=colour)
