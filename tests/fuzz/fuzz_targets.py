"""The fuzz targets: one input in, an accepted result or the module's own error out.

Each target feeds bytes to a parser of untrusted input and checks the outcome:

- :func:`image` — :func:`indexer.images.load_image` as the intake calls it (byte limit,
  format allow-list, pixel limit, full decode, EXIF orientation, RGB), then the
  thumbnail. Ends in an upright RGB image within the limits, or :class:`ImageRejected`.
- :func:`manifest` — :func:`indexer.sources.manifest.read_manifest` on a CSV or JSON
  Lines file (the first byte chooses: odd, e.g. ``c``, CSV; even, e.g. ``j``, JSON
  Lines; the rest is the file), read both as the CLI reads it (local paths allowed)
  and as the API reads an uploaded one (URLs only). Ends in records that hold what
  the module promises, or :class:`ManifestError`.

Any other exception escapes: the fuzzer reports it as a crash with the input that
caused it. The same functions replay the seed corpus in the ordinary test run.
"""

from __future__ import annotations

import atexit
import io
import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from PIL import Image

from indexer.images import (
    ALLOWED_FORMATS,
    FORMAT_EXTENSIONS,
    ImageRejected,
    load_image,
    make_thumbnail,
)
from indexer.sources.manifest import ManifestError, read_manifest

# Smaller than the default limits, so that an image the limits accept stays cheap to
# decode in the fuzz loop and the memory guard around it can be tight.
MAX_BYTES = 1024 * 1024
MAX_PIXELS = 2_000_000
THUMBNAIL_SIZE = 64

ACCEPTED, REJECTED = "accepted", "rejected"


def image(data: bytes) -> str:
    """Decode ``data`` as the intake does; check the result. Returns the outcome."""
    # Every other input asks for a JPEG draft too, the embedder's reduced decode.
    draft = 32 if len(data) % 2 else None
    try:
        loaded = load_image(data, max_pixels=MAX_PIXELS, max_bytes=MAX_BYTES, draft=draft)
        thumbnail = make_thumbnail(loaded.image, THUMBNAIL_SIZE)
    except ImageRejected as rejected:
        assert isinstance(rejected.reason, str) and rejected.reason, repr(rejected)
        return REJECTED
    picture = loaded.image
    assert loaded.format in ALLOWED_FORMATS, loaded.format
    assert loaded.ext == FORMAT_EXTENSIONS[loaded.format]
    assert picture.mode == "RGB", picture.mode
    assert picture.size == (loaded.width, loaded.height), (picture.size, loaded)
    assert loaded.width >= 1 and loaded.height >= 1
    assert loaded.width * loaded.height <= MAX_PIXELS, picture.size
    assert len(picture.tobytes()) == loaded.width * loaded.height * 3
    with Image.open(io.BytesIO(thumbnail)) as thumb:
        assert thumb.format == "JPEG" and max(thumb.size) <= THUMBNAIL_SIZE, thumb.size
    return ACCEPTED


# One scratch file per process for the manifest under test, in memory where possible.
_scratch = Path(
    tempfile.mkdtemp(
        prefix="lookalike-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None
    )
)
atexit.register(shutil.rmtree, _scratch, ignore_errors=True)


def manifest(data: bytes) -> str:
    """Read ``data`` as a manifest file (first byte: the type); check the records."""
    if not data:
        return REJECTED  # no type byte: nothing to read
    suffix = ".csv" if data[0] % 2 else ".jsonl"
    path = _scratch / f"manifest{suffix}"
    path.write_bytes(data[1:])
    outcomes = []
    for allow_paths in (True, False):
        try:
            records = read_manifest(path, allow_paths=allow_paths)
        except ManifestError as error:
            assert error.path == path.resolve(), error.path
            assert error.line is None or error.line >= 1, error.line
            assert str(error).startswith(str(error.path)), str(error)
            outcomes.append(None)
            continue
        for record in records:
            _check_record(record, allow_paths)
        outcomes.append(records)
    with_paths, urls_only = outcomes
    # Refusing local paths only ever refuses more: what it accepts, the CLI reads alike.
    if urls_only is not None:
        assert with_paths == urls_only, (with_paths, urls_only)
    return ACCEPTED if with_paths is not None else REJECTED


def _check_record(record, allow_paths: bool) -> None:
    assert (record.path is None) != (record.url is None), record
    if record.path is not None:
        assert allow_paths, record
        assert record.path.is_absolute(), record.path
    else:
        assert record.source_url == record.url, record
    for url in (record.url, record.page_url):
        if url is not None:
            parts = urlsplit(url)
            assert parts.scheme.lower() in ("http", "https") and parts.netloc, url
    for name in ("product_id", "label", "title"):
        value = getattr(record, name)
        assert value is None or (isinstance(value, str) and value == value.strip() and value)
    # Text the catalog can store (PostgreSQL refuses NUL; nothing stores a lone surrogate).
    for value in (
        record.path,
        record.url,
        record.source_url,
        record.page_url,
        record.product_id,
        record.label,
        record.title,
    ):
        if value is not None:
            text = str(value)
            assert "\x00" not in text, record
            text.encode("utf-8")  # UnicodeEncodeError escapes: a crash


TARGETS = {"image": image, "manifest": manifest}
