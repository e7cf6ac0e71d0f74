"""Is a response an HTML page or XML document a crawl reads? The header, then the bytes.

The document counterpart of :mod:`~indexer.sources.content`, for
:meth:`~indexer.sources.fetch.Fetcher.fetch_document`: the caller names the
kinds it wants (:data:`DOCUMENT_TYPES`), anything served as another type is
refused, and so are an image, a PDF or the like served as a page. A document
may come gzip-compressed (a ``sitemap.xml.gz``, or ``Content-Encoding: gzip``
though we ask for none); :func:`gunzip` holds the byte limit for the
decompressed size too, so a small bomb never inflates past it.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from indexer.images import sniff_format
from indexer.sources.content import UNTYPED, looks_like_html
from indexer.sources.failures import FetchError

#: What :meth:`~indexer.sources.fetch.Fetcher.fetch_document` may be asked for, and the
#: media types of each.
DOCUMENT_TYPES: dict[str, tuple[str, ...]] = {
    "html": ("text/html", "application/xhtml+xml"),
    "xml": ("application/xml", "text/xml"),
}
#: A gzip file (``sitemap.xml.gz``): accepted, and decompressed, for the kind "xml" only.
GZIP_TYPES = ("application/gzip", "application/x-gzip")
GZIP_MAGIC = b"\x1f\x8b"
#: Content-Encoding values a document may come with ("" and identity: none).
DOCUMENT_ENCODINGS = ("", "identity", "gzip", "x-gzip")


def document_kinds(kinds: Sequence[str]) -> tuple[tuple[str, ...], str]:
    """``kinds`` without repeats, and the Accept header asking for them; ValueError if unknown."""
    kinds = tuple(dict.fromkeys(kinds))
    unknown = [kind for kind in kinds if kind not in DOCUMENT_TYPES]
    if unknown or not kinds:
        what = f"unknown document kinds {unknown!r}" if unknown else "no document kind"
        raise ValueError(f"{what} (known: {', '.join(DOCUMENT_TYPES)})")
    accept = ",".join(t for kind in kinds for t in DOCUMENT_TYPES[kind]) + ",*/*;q=0.1"
    return kinds, accept


def check_served(served: str, kinds: tuple[str, ...], url: str) -> None:
    """Refuse a response served as a type none of ``kinds`` is (``served``: its media type)."""
    accepted = [t for kind in kinds for t in DOCUMENT_TYPES[kind]]
    gzip_file_ok = "xml" in kinds
    if not (served in accepted or served in UNTYPED or (gzip_file_ok and served in GZIP_TYPES)):
        why = f"not a document: served as {served} (accepted: {', '.join(accepted)})"
        raise FetchError(why, permanent=True, url=url)


def unpack(
    data: bytes, compressed: bool, served: str, kinds: tuple[str, ...], limit: int, url: str
) -> bytes:
    """The document in a body read as it came (``compressed``: with a gzip Content-Encoding).

    A gzip file inside, after any Content-Encoding is undone, is decompressed too
    (for "xml" only: a ``sitemap.xml.gz``).
    """
    if compressed:
        data = gunzip(data, limit, url)
    if data.startswith(GZIP_MAGIC):
        if "xml" not in kinds:
            why = f"not a document: served as {served or 'no content type'} but gzip-compressed"
            raise FetchError(why, permanent=True, url=url)
        data = gunzip(data, limit, url)
    if not data:
        raise FetchError("empty body", permanent=True, url=url)
    return data


def document_format(data: bytes, served: str, kinds: tuple[str, ...], url: str) -> str:
    """The kind of document ``data`` is ("html" or "xml"), or a FetchError saying why none."""
    refuse_binary(data, served, url)
    for kind in kinds:
        if served in DOCUMENT_TYPES[kind]:
            return kind
    # No type, a generic one, or a gzip file: the bytes decide.
    text = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n\f")
    if "html" in kinds and looks_like_html(text):
        return "html"
    if "xml" in kinds and text.startswith(b"<"):
        return "xml"
    if "html" in kinds and text.startswith(b"<"):
        return "html"  # XHTML opening with <?xml, or markup that skips <html>
    wanted = " or ".join(kind.upper() for kind in kinds)
    why = f"not a document: served as {served or 'no content type'} but the bytes are not {wanted}"
    raise FetchError(why, permanent=True, url=url)


def refuse_binary(data: bytes, served: str, url: str) -> None:
    """Refuse an image, a PDF or the like that was served where a page was expected."""
    if data.startswith(GZIP_MAGIC):
        return  # decompressed, and checked, later
    if (other := sniff_format(data[:1024])) is not None:
        why = f"not a document: served as {served or 'no content type'} but the bytes are {other}"
        raise FetchError(why, permanent=True, url=url)


def gunzip(data: bytes, limit: int, url: str) -> bytes:
    """``data`` decompressed (every gzip member), refused as soon as it passes ``limit`` bytes."""
    out = bytearray()
    while data:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip header and trailer
        try:
            # max_length: a small bomb never inflates past one byte over the limit.
            out += inflater.decompress(data, limit + 1 - len(out))
        except zlib.error as exc:
            raise FetchError(f"invalid gzip data: {exc}", permanent=True, url=url) from None
        if len(out) > limit:
            why = f"body exceeds {limit} bytes once decompressed"
            raise FetchError(why, permanent=True, url=url)
        if not inflater.eof:
            raise FetchError("invalid gzip data: truncated", permanent=True, url=url)
        data = inflater.unused_data
        if not data.startswith(GZIP_MAGIC):
            break  # trailing garbage: gzip(1) ignores it too
    return bytes(out)
