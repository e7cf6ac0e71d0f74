"""Synthetic test images, good and bad, generated in memory from a seed.

Good ones look a little like photos (gradients, noise, shapes) so that codecs behave
as they do on real pictures; bad ones reproduce the inputs a catalogue intake meets
in the wild: truncated uploads, decompression bombs, print formats, text files
named ``.jpg``.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

RED = (255, 0, 0)
BLUE = (0, 0, 255)


def photo_like(seed: int = 0, size: tuple[int, int] = (96, 64)) -> Image.Image:
    """A deterministic RGB picture: a colour gradient, noise and a few shapes."""
    rng = np.random.default_rng(seed)
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(0, 255, size=3)
    slope = rng.uniform(-2, 2, size=(3, 2))
    channels = [
        base[c] + slope[c, 0] * xs * 128 / width + slope[c, 1] * ys * 128 / height for c in range(3)
    ]
    array = np.stack(channels, axis=-1) + rng.normal(0, 12, size=(height, width, 3))
    image = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), mode="RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        x0, x1 = sorted(rng.integers(0, width, size=2).tolist())
        y0, y1 = sorted(rng.integers(0, height, size=2).tolist())
        colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
        if rng.random() < 0.5:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
    return image


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def jpeg_bytes(seed: int = 0, size: tuple[int, int] = (96, 64), quality: int = 90) -> bytes:
    return encode(photo_like(seed, size), "JPEG", quality=quality)


def png_bytes(seed: int = 0, size: tuple[int, int] = (96, 64)) -> bytes:
    return encode(photo_like(seed, size), "PNG")


def webp_bytes(seed: int = 0, size: tuple[int, int] = (96, 64)) -> bytes:
    return encode(photo_like(seed, size), "WEBP", quality=90)


def bmp_bytes(seed: int = 0, size: tuple[int, int] = (96, 64)) -> bytes:
    return encode(photo_like(seed, size), "BMP")


def gif_bytes(seed: int = 0, size: tuple[int, int] = (96, 64), frames: int = 2) -> bytes:
    """An animated GIF; the first frame is ``photo_like(seed)`` quantised."""
    images = [photo_like(seed + i, size).quantize(64) for i in range(frames)]
    return encode(images[0], "GIF", save_all=True, append_images=images[1:], duration=100)


def transparent_png_bytes(size: tuple[int, int] = (32, 32)) -> bytes:
    """RGBA: left half opaque red, right half fully transparent (loads as white)."""
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    ImageDraw.Draw(image).rectangle((0, 0, size[0] // 2 - 1, size[1] - 1), fill=(*RED, 255))
    return encode(image, "PNG")


def palette_transparent_gif_bytes(size: tuple[int, int] = (32, 32)) -> bytes:
    """Palette GIF with a transparent index covering the right half."""
    image = Image.new("P", size, 0)
    image.putpalette([*RED, *BLUE] + [0] * (256 - 2) * 3)
    ImageDraw.Draw(image).rectangle((size[0] // 2, 0, size[0] - 1, size[1] - 1), fill=1)
    return encode(image, "GIF", transparency=1)


def cmyk_jpeg_bytes(size: tuple[int, int] = (64, 48)) -> bytes:
    """A CMYK JPEG (print workflows produce these) of a pure red picture."""
    return encode(Image.new("RGB", size, RED).convert("CMYK"), "JPEG", quality=95)


def png16_bytes(size: tuple[int, int] = (64, 16)) -> bytes:
    """16-bit greyscale PNG: a horizontal ramp from 0 to 65535."""
    width, height = size
    ramp = np.linspace(0, 65535, width).round().astype(np.uint16)
    array = np.tile(ramp, (height, 1))
    image = Image.fromarray(array)  # mode I;16
    return encode(image, "PNG")


def exif_rotated_jpeg_bytes(size: tuple[int, int] = (80, 40)) -> bytes:
    """Stored pixels: red left half, blue right half, with EXIF orientation 6.

    Orientation 6 means "rotate 90 degrees clockwise to display", so upright the
    picture is ``size`` transposed with red on the top half and blue on the bottom.
    """
    width, height = size
    image = Image.new("RGB", size, BLUE)
    ImageDraw.Draw(image).rectangle((0, 0, width // 2 - 1, height - 1), fill=RED)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    return encode(image, "JPEG", quality=95, exif=exif.tobytes())


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    return data[: int(len(data) * keep)]


def truncated_jpeg_bytes() -> bytes:
    return truncated(jpeg_bytes(seed=7, size=(256, 192)))


def truncated_png_bytes() -> bytes:
    return truncated(png_bytes(seed=7, size=(256, 192)))


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_bomb_bytes(width: int = 30000, height: int = 30000, rows: int = 16) -> bytes:
    """A valid-looking PNG whose header declares ``width`` x ``height`` greyscale pixels.

    Only ``rows`` rows of zeros are actually present, compressed to a few KB: a
    decoder that trusted the header would allocate ``width * height`` bytes.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    raw = (b"\x00" + b"\x00" * width) * rows  # filter byte + row
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(raw, 9))
        + _png_chunk(b"IEND", b"")
    )


def eps_bytes() -> bytes:
    return (
        b"%!PS-Adobe-3.0 EPSF-3.0\n"
        b"%%BoundingBox: 0 0 100 100\n"
        b"%%EndComments\n"
        b"newpath 10 10 moveto 90 90 lineto stroke\n"
        b"showpage\n%%EOF\n"
    )


def psd_bytes(width: int = 16, height: int = 16) -> bytes:
    """The header of a Photoshop document (RGB, 8 bits) followed by empty sections."""
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, height, width, 8, 3)
    sections = struct.pack(">III", 0, 0, 0)  # colour mode data, resources, layers
    pixels = struct.pack(">H", 0) + b"\x00" * (width * height * 3)  # raw, no compression
    return header + sections + pixels


def text_bytes() -> bytes:
    return b"this is not an image, just text saved with a .jpg name\n"


def image_bytes(fmt: str, seed: int = 0, size: tuple[int, int] = (96, 64)) -> bytes:
    """Good bytes of an allowed format by Pillow name (JPEG, PNG, WEBP, GIF, BMP)."""
    makers = {
        "JPEG": jpeg_bytes,
        "PNG": png_bytes,
        "WEBP": webp_bytes,
        "GIF": gif_bytes,
        "BMP": bmp_bytes,
    }
    return makers[fmt](seed=seed, size=size)


def class_photo(label: int, seed: int, size: tuple[int, int] = (64, 48)) -> Image.Image:
    """A photo of class ``label``: a class-specific colour and shape on a noisy background.

    Images of one class look alike and differ from other classes, so a model has
    something to learn, yet no two images are equal (position, scale and noise vary).
    """
    rng = np.random.default_rng([label, seed])
    width, height = size
    hue = np.random.default_rng(label).integers(0, 255, 3)
    background = rng.integers(0, 80, (height, width, 3)).astype(np.uint8)
    image = Image.fromarray(background)
    draw = ImageDraw.Draw(image)
    box_w = int(width * rng.uniform(0.4, 0.7))
    box_h = int(height * rng.uniform(0.4, 0.7))
    left = int(rng.integers(0, width - box_w))
    top = int(rng.integers(0, height - box_h))
    shape = draw.ellipse if label % 2 else draw.rectangle
    shape((left, top, left + box_w, top + box_h), fill=tuple(int(c) for c in hue))
    return image


def write_labelled_folder(root: Path, classes: int, per_class: int | list[int],
                          size: tuple[int, int] = (64, 48)) -> Path:
    """``root/class-NN/img-MM.jpg``; ``per_class`` may give a count per class."""
    counts = per_class if isinstance(per_class, list) else [per_class] * classes
    for label, count in enumerate(counts):
        folder = Path(root) / f"class-{label:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            class_photo(label, index, size).save(folder / f"img-{index:02d}.jpg", quality=90)
    return Path(root)


def distinct_product(size: int = 176) -> Image.Image:
    """A made-up product with four different quarters (colours, shapes, a bar, a cross):
    no part repeats another, so hiding any part of it changes what a model sees."""
    image = Image.new("RGB", (size, size), (245, 240, 230))
    draw = ImageDraw.Draw(image)
    h, e = size // 2, size // 12
    draw.rectangle((0, 0, h, h), fill=(200, 30, 40))
    draw.ellipse((h // 5, h // 5, h - h // 5, h - h // 5), fill=(250, 220, 40))
    draw.rectangle((h, 0, size, h), fill=(20, 60, 200))
    draw.polygon([(h + h // 6, h - h // 6), (size - h // 6, h - h // 6), (h + h // 2, h // 6)],
                 fill=(250, 250, 250))
    draw.rectangle((0, h, h, size), fill=(30, 150, 60))
    draw.rectangle((h // 6, h + h // 3, h - h // 6, h + 2 * h // 3), fill=(0, 0, 0))
    draw.rectangle((h, h, size, size), fill=(240, 120, 20))
    draw.line((h, h, size, size), fill=(80, 0, 120), width=e)
    draw.line((h, size, size, h), fill=(80, 0, 120), width=e)
    return image


def gradient_background(seed: int, size: tuple[int, int] = (320, 320)) -> Image.Image:
    """A plain backdrop: a colour gradient (direction and colours from ``seed``) with noise."""
    rng = np.random.default_rng(seed)
    width, height = size
    start, end = rng.uniform(60, 220, 3), rng.uniform(60, 220, 3)
    ramp = np.linspace(0, 1, height if seed % 2 else width)
    pixels = start * (1 - ramp[:, None]) + end * ramp[:, None]  # (steps, 3)
    pixels = (np.broadcast_to(pixels[:, None, :], (height, width, 3)) if seed % 2
              else np.broadcast_to(pixels[None, :, :], (height, width, 3)))
    pixels = pixels + rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def pasted(product: Image.Image, background: Image.Image,
           at: tuple[int, int]) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """``product`` pasted on a copy of ``background`` at ``at``; and its box (x0, y0, x1, y1)."""
    scene = background.copy()
    scene.paste(product, at)
    return scene, (at[0], at[1], at[0] + product.width, at[1] + product.height)
