"""Safe image intake: content ids, guarded decoding, RGB normalisation, thumbnails.

Every image that Lookalike decodes (a catalogue file, a fetched URL, a query upload,
a stored file being embedded or trained on) goes through :func:`load_image`, and its
EXIF orientation through :func:`exif_upright`. Untrusted bytes are checked in the
cheapest order:

1. byte size, before anything is parsed;
2. format, from the header, against a small allow-list (the hardened, common web
   formats; no EPS/PostScript, which would run Ghostscript, no PSD/TIFF);
3. pixel count, from the header, before a single pixel is decoded (a 30000x30000
   PNG can be a few KB on disk and 900 MB in memory);
4. a full decode with ``.load()`` (``verify()`` alone misses truncated pixel data),
   with ``ImageFile.LOAD_TRUNCATED_IMAGES`` left False so short files are rejected.

Whatever fails raises :class:`ImageRejected` with a short reason that the catalog
stores on the item: a rejected image is a permanent failure, never retried.

Pillow's own decompression-bomb guard stays on as an outer bound: its
``DecompressionBombWarning`` is turned into an error while we decode, and its
``DecompressionBombError`` is reported like our own pixel limit. We never change
``Image.MAX_IMAGE_PIXELS``; the per-call ``max_pixels`` is checked by us.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
import struct
import threading
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)

MiB = 1024 * 1024

#: Formats we decode, as Pillow names them, and the file extension each is stored under.
FORMAT_EXTENSIONS: dict[str, str] = {
    "JPEG": "jpg",
    "PNG": "png",
    "WEBP": "webp",
    "GIF": "gif",
    "BMP": "bmp",
}
ALLOWED_FORMATS: tuple[str, ...] = tuple(FORMAT_EXTENSIONS)

THUMBNAIL_FORMAT = "JPEG"
THUMBNAIL_EXT = "jpg"
THUMBNAIL_QUALITY = 85

# Errors Pillow's decoders raise on bad data (besides OSError for truncation).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError)
_EXIF_ERRORS = (SyntaxError, ValueError, KeyError, TypeError, struct.error, OSError, IndexError)


class ImageRejected(ValueError):
    """Bytes that are not an image we accept. ``reason`` is short and human-readable."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class LoadedImage:
    """A fully decoded, upright RGB image and what its header said."""

    image: Image.Image
    format: str  # Pillow's name, one of ALLOWED_FORMATS
    width: int  # as decoded (after a JPEG draft) and after EXIF orientation
    height: int

    @property
    def ext(self) -> str:
        """File extension to store the original bytes under."""
        return FORMAT_EXTENSIONS[self.format]


def content_id(data: bytes) -> str:
    """The item id: sha256 of the bytes, lower-case hex. Same image, same item."""
    return hashlib.sha256(data).hexdigest()


def _format_bytes(n: int) -> str:
    return f"{n // MiB} MiB" if n % MiB == 0 else f"{n} bytes"


def size_rejection(size: int, max_bytes: int | None) -> ImageRejected | None:
    """Why ``size`` bytes are refused before parsing, or None. For callers that stream bytes.

    ``max_bytes`` None: only an empty file is refused."""
    if size == 0:
        return ImageRejected("empty file")
    if max_bytes is not None and size > max_bytes:
        return ImageRejected(
            f"file too large: {size} bytes exceeds {_format_bytes(max_bytes)} limit"
        )
    return None


def check_size(size: int, max_bytes: int | None) -> None:
    """Raise :class:`ImageRejected` if ``size`` bytes are refused before parsing."""
    if (rejected := size_rejection(size, max_bytes)) is not None:
        raise rejected


# Magic numbers of formats people commonly mistake for web images, so that the
# reason names what the file is instead of a vague "unrecognised".
_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\xc5\xd0\xd3\xc6", 0, "EPS"),
    (b"8BPS", 0, "PSD"),
    (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"),
    (b"II+\x00", 0, "TIFF"),
    (b"MM\x00+", 0, "TIFF"),
    (b"%PDF", 0, "PDF"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", 0, "JPEG2000"),
    (b"\xffO\xffQ", 0, "JPEG2000"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", 0, "JPEGXL"),
    (b"\xff\x0a", 0, "JPEGXL"),
    (b"qoif", 0, "QOI"),
    (b"DDS ", 0, "DDS"),
    (b"\x00\x00\x01\x00", 0, "ICO"),
    (b"icns", 0, "ICNS"),
    (b"\xff\xd8\xff", 0, "JPEG"),
    (b"\x89PNG\r\n\x1a\n", 0, "PNG"),
    (b"GIF87a", 0, "GIF"),
    (b"GIF89a", 0, "GIF"),
    (b"BM", 0, "BMP"),
)
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}


def sniff_format(data: bytes) -> str | None:
    """Best-effort format name from magic bytes, only to explain a rejection."""
    head = data[:64]
    if head.startswith(b"%!PS"):
        return "EPS" if b"EPSF" in head.split(b"\n", 1)[0] else "PostScript"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _AVIF_BRANDS:
            return "AVIF"
        if brand in _HEIF_BRANDS:
            return "HEIF"
    for magic, offset, name in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return name
    text = data[:1024].lstrip().lower()
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in text):
        return "SVG"
    return None


# catch_warnings swaps the process-wide filter list and is not thread-safe: two
# overlapping contexts can restore each other's state and leak the filter. Decoding
# runs in a thread pool, so the first decoder in installs the filter and the last
# one out removes it; in between every decode sees it.
_guard_lock = threading.Lock()
_guard_depth = 0
_guard_ctx: warnings.catch_warnings | None = None


@contextlib.contextmanager
def _bomb_warnings_as_errors() -> Iterator[None]:
    global _guard_depth, _guard_ctx
    with _guard_lock:
        if _guard_depth == 0:
            _guard_ctx = warnings.catch_warnings()
            _guard_ctx.__enter__()
            warnings.simplefilter("error", Image.DecompressionBombWarning)
        _guard_depth += 1
    try:
        yield
    finally:
        with _guard_lock:
            _guard_depth -= 1
            if _guard_depth == 0 and _guard_ctx is not None:
                _guard_ctx.__exit__(None, None, None)
                _guard_ctx = None


_PILLOW_PIXELS = re.compile(r"\((\d+) pixels\)")


def _bomb_reason(exc: BaseException, max_pixels: int) -> str:
    match = _PILLOW_PIXELS.search(str(exc))
    pixels = match.group(1) if match else "too many"
    return f"image too large: {pixels} pixels exceeds limit {max_pixels}"


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageRejected(f"invalid image size {width}x{height}")
    if width * height > max_pixels:
        raise ImageRejected(f"image too large: {width}x{height} pixels exceeds limit {max_pixels}")


def _decode_error_reason(exc: BaseException) -> str:
    message = str(exc)
    if isinstance(exc, EOFError) or "truncated" in message.lower():
        return "truncated image data"
    return f"corrupt image data: {message or type(exc).__name__}"


def load_image(
    source: bytes | str | os.PathLike,
    *,
    max_pixels: int,
    max_bytes: int | None = None,
    draft: int | None = None,
) -> LoadedImage:
    """Decode untrusted bytes or a file into an upright RGB image, or raise :class:`ImageRejected`.

    The one decoder of the project: intake and queries pass bytes, the embedder and the
    trainer pass stored files. ``max_bytes`` (None: no byte limit, for files intake has
    already sized) is checked before parsing. ``draft`` lets a JPEG decode at 1/2, 1/4 or
    1/8 scale, never below ``draft`` pixels on either side: several times cheaper than
    a full decode when the caller resizes to a small input anyway (the embedder).
    """
    if isinstance(source, bytes | bytearray | memoryview):
        check_size(len(source), max_bytes)
        return _decode(io.BytesIO(source), max_pixels, draft)
    path = Path(source)
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise ImageRejected(f"file not found: {path}") from None
    except OSError as exc:
        raise ImageRejected(f"cannot read file: {exc.strerror or exc}") from None
    with handle:
        check_size(os.fstat(handle.fileno()).st_size, max_bytes)
        return _decode(handle, max_pixels, draft)


def _decode(handle: BinaryIO, max_pixels: int, draft: int | None) -> LoadedImage:
    with _bomb_warnings_as_errors():
        try:
            image = Image.open(handle, formats=list(ALLOWED_FORMATS))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageRejected(_bomb_reason(exc, max_pixels)) from None
        except UnidentifiedImageError:
            handle.seek(0)
            raise ImageRejected(_unidentified_reason(handle.read(1024))) from None
        except _DECODE_ERRORS as exc:
            raise ImageRejected(_decode_error_reason(exc)) from None
        fmt = image.format or ""
        if fmt not in ALLOWED_FORMATS:  # defensive: Pillow honoured `formats` above
            raise ImageRejected(_not_allowed(fmt))
        _check_pixels(image.size, max_pixels)
        if draft is not None and fmt == "JPEG":
            image.draft("RGB", (draft, draft))
        try:
            image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageRejected(_bomb_reason(exc, max_pixels)) from None
        except _DECODE_ERRORS as exc:
            raise ImageRejected(_decode_error_reason(exc)) from None
    # A GIF frame may extend the canvas while loading; check what was actually decoded.
    _check_pixels(image.size, max_pixels)
    rgb = to_rgb(exif_upright(image))
    return LoadedImage(image=rgb, format=fmt, width=rgb.width, height=rgb.height)


def _not_allowed(fmt: str) -> str:
    return f"format {fmt} not allowed (allowed: {', '.join(ALLOWED_FORMATS)})"


def _unidentified_reason(data: bytes) -> str:
    sniffed = sniff_format(data)
    if sniffed is None:
        return "not an image: unrecognised format"
    if sniffed in ALLOWED_FORMATS:
        return f"corrupt image data: unreadable {sniffed} header"
    return _not_allowed(sniffed)


def exif_upright(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says (a copy); the one EXIF helper.

    Broken EXIF is not worth rejecting a good picture: it comes back unturned.
    """
    try:
        return ImageOps.exif_transpose(image)
    except _EXIF_ERRORS as exc:
        log.debug("ignoring unreadable EXIF orientation: %s", exc)
        return image


def _on_white(image: Image.Image) -> Image.Image:
    """Composite anything with alpha onto white: transparent product shots have white shelves."""
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _high_bit_depth_to_l(image: Image.Image) -> Image.Image:
    """Scale 16/32-bit greyscale to 8 bits. Pillow's convert('L') clips at 255 instead."""
    array = np.asarray(image)
    if image.mode.startswith("I;16"):
        top = 65535.0
        low = 0.0
    else:  # "I" or "F": use the 16-bit range when values fit it, else the data's range
        array = array.astype(np.float64)
        low = float(array.min(initial=0.0))
        top = float(array.max(initial=0.0))
        if low >= 0 and top <= 255 and image.mode == "I":
            top, low = 255.0, 0.0
        elif low >= 0 and top <= 65535:
            top, low = 65535.0, 0.0
    span = max(top - low, 1e-12)
    scaled = np.clip((array.astype(np.float64) - low) * (255.0 / span) + 0.5, 0, 255)
    return Image.fromarray(scaled.astype(np.uint8), mode="L")


def to_rgb(image: Image.Image) -> Image.Image:
    """Normalise any decoded mode to 8-bit RGB."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        return _on_white(image)
    if mode == "P":
        if "transparency" in image.info:
            return _on_white(image)
        return image.convert("RGB")
    if mode.startswith("I") or mode == "F":
        return _high_bit_depth_to_l(image).convert("RGB")
    # "1", "L", "CMYK", "YCbCr", "LAB", "HSV", ...
    return image.convert("RGB")


def make_thumbnail(image: Image.Image, size: int) -> bytes:
    """JPEG bytes of ``image`` shrunk so its longest side is at most ``size`` (never enlarged)."""
    if size < 1:
        raise ValueError(f"thumbnail size must be >= 1, got {size}")
    thumb = to_rgb(image).copy()
    thumb.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
    buffer = io.BytesIO()
    thumb.save(buffer, THUMBNAIL_FORMAT, quality=THUMBNAIL_QUALITY, optimize=True)
    return buffer.getvalue()
