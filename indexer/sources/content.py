"""Is a response an image we decode? First the Content-Type header, then the bytes.

The header is checked before the body is read: ``text/html`` and other non-image
types are refused outright, and so are image types we do not decode (SVG, TIFF,
HEIC, …). A missing or generic type (``application/octet-stream``, common on
CDNs) is let through to the byte check.

The header alone proves nothing: error pages and login walls are often served as
``image/jpeg``. So the first bytes of the body are sniffed for a magic number
(:func:`indexer.images.sniff_format`) and must be one of the formats
:func:`indexer.images.load_image` accepts; HTML is named as such in the reason.
"""

from __future__ import annotations

from indexer.images import ALLOWED_FORMATS, sniff_format

#: Content types we accept, and the format their bytes should have.
IMAGE_TYPES: dict[str, str] = {
    "image/jpeg": "JPEG",
    "image/jpg": "JPEG",
    "image/pjpeg": "JPEG",
    "image/png": "PNG",
    "image/x-png": "PNG",
    "image/webp": "WEBP",
    "image/gif": "GIF",
    "image/bmp": "BMP",
    "image/x-bmp": "BMP",
    "image/x-ms-bmp": "BMP",
}
#: Types that say nothing about the bytes: the sniffed format decides.
UNTYPED: frozenset[str] = frozenset(
    {"", "application/octet-stream", "binary/octet-stream", "application/binary"}
)
#: Bytes needed to recognise every format we know (``sniff_format`` reads 64).
SNIFF_BYTES = 64

# Openings of an HTML document (the WHATWG MIME sniffing list, abridged).
_HTML_OPENINGS = (
    b"<!doctype html",
    b"<html",
    b"<head",
    b"<body",
    b"<script",
    b"<iframe",
    b"<title",
    b"<style",
    b"<table",
    b"<meta",
    b"<div",
    b"<font",
    b"<h1",
    b"<br",
    b"<p>",
    b"<a ",
    b"<b>",
    b"<!--",
)


def media_type(content_type: str | None) -> str:
    """``'Image/JPEG; charset=x'`` -> ``'image/jpeg'``; missing -> ``''``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def _described(content_type: str | None) -> str:
    return media_type(content_type) or "no content type"


def content_type_refusal(content_type: str | None) -> str | None:
    """Why a response with this Content-Type is refused before reading it, or None."""
    kind = media_type(content_type)
    if kind in IMAGE_TYPES or kind in UNTYPED:
        return None
    if kind.startswith("image/"):
        return f"image type {kind} not supported (supported: {', '.join(ALLOWED_FORMATS)})"
    return f"not an image: served as {kind}"


def looks_like_html(head: bytes) -> bool:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n\f").lower()
    return text.startswith(_HTML_OPENINGS)


def sniff_image(head: bytes) -> str | None:
    """The format of an image we decode, from its first bytes; None for anything else."""
    fmt = sniff_format(head)
    return fmt if fmt in ALLOWED_FORMATS else None


def bytes_refusal(head: bytes, content_type: str | None) -> str | None:
    """Why the first bytes of a body are refused, or None when they open an image we decode."""
    if sniff_image(head) is not None:
        return None
    served = _described(content_type)
    if looks_like_html(head):
        what = "HTML"
    elif (other := sniff_format(head)) is not None:
        what = other
    else:
        what = f"not {', '.join(ALLOWED_FORMATS)}"
    return f"not an image: served as {served} but the bytes are {what}"
