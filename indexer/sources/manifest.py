"""Manifests: a CSV (with a header row) or JSON Lines file listing images.

Columns (CSV header names or JSON keys; case-insensitive, extra ones ignored):

=============  ==================================================================
``path``       a local image file; relative paths are relative to the manifest's
               own folder
``image_url``  an ``http(s)://`` image to fetch later (queued as a pending fetch)
``product_id`` optional; the product this image shows (numbers become strings)
``label``      optional; class or category, used for training and filters
``title``      optional; product title shown in results
``url``        optional; the product page (``http(s)://``)
=============  ==================================================================

Each row needs ``path`` or ``image_url``. When both are given the local file is
read and ``image_url`` is kept as the item's origin (``source_url``). The file
type comes from the extension: ``.csv``, or ``.jsonl`` / ``.ndjson``.

A malformed row raises :class:`ManifestError` naming the file and line.
:func:`read_manifest` parses the whole file first, so a bad line is reported
before anything is ingested. Only URL schemes are checked here; fetching (with
its own size, timeout and private-address rules) comes later.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from indexer.sources.records import SourceRecord

log = logging.getLogger(__name__)

MANIFEST_EXTENSIONS: dict[str, str] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
COLUMNS = ("path", "image_url", "product_id", "label", "title", "url")
_URL_SCHEMES = ("http", "https")


class ManifestError(ValueError):
    """A manifest that cannot be read; the message names the file and line."""

    def __init__(self, path: Path, line: int | None, message: str) -> None:
        where = f"{path}, line {line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line


def is_manifest(path: Path) -> bool:
    return Path(path).suffix.lower() in MANIFEST_EXTENSIONS


def iter_manifest(path: Path, *, allow_paths: bool = True) -> Iterator[SourceRecord]:
    """Yield a record per row. ``allow_paths=False`` refuses local paths (uploaded manifests)."""
    path = Path(path).resolve()
    kind = MANIFEST_EXTENSIONS.get(path.suffix.lower())
    if kind is None:
        allowed = ", ".join(MANIFEST_EXTENSIONS)
        raise ManifestError(path, None, f"unknown manifest type; use one of: {allowed}")
    rows = _csv_rows(path) if kind == "csv" else _jsonl_rows(path)
    for line, row in rows:
        yield _record(path, line, row, allow_paths=allow_paths)


def read_manifest(path: Path, *, allow_paths: bool = True) -> list[SourceRecord]:
    """All records of a manifest, validated before any is used."""
    return list(iter_manifest(path, allow_paths=allow_paths))


def _open_text(path: Path):
    # utf-8-sig: spreadsheet programs put a byte-order mark before the header.
    return open(path, encoding="utf-8-sig", newline="")


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with _open_text(path) as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header is None:
                raise ManifestError(path, None, "empty manifest (no header row)")
            names = [name.strip().lower() for name in header]
            if "path" not in names and "image_url" not in names:
                raise ManifestError(
                    path, 1, f"header needs a 'path' or 'image_url' column, got {header}"
                )
            for values in reader:
                line = reader.line_num
                if not any(v.strip() for v in values):
                    continue  # blank line
                if len(values) > len(names):
                    raise ManifestError(
                        path, line, f"{len(values)} fields but the header has {len(names)}"
                    )
                yield line, dict(zip(names, values, strict=False))
        except csv.Error as exc:
            raise ManifestError(path, reader.line_num, f"bad CSV: {exc}") from None
        except UnicodeDecodeError as exc:
            raise ManifestError(path, None, f"not UTF-8 text: {exc}") from None


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with _open_text(path) as handle:
        line = 0
        try:
            for line, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                try:
                    row = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise ManifestError(path, line, f"invalid JSON: {exc.msg}") from None
                except ValueError as exc:  # e.g. an integer of more than 4300 digits
                    raise ManifestError(path, line, f"invalid JSON: {exc}") from None
                except RecursionError:
                    raise ManifestError(path, line, "invalid JSON: nested too deeply") from None
                if not isinstance(row, dict):
                    raise ManifestError(
                        path, line, f"expected a JSON object, got {type(row).__name__}"
                    )
                yield line, {str(k).strip().lower(): v for k, v in row.items()}
        except UnicodeDecodeError as exc:
            raise ManifestError(path, line + 1, f"not UTF-8 text: {exc}") from None


def _text(path: Path, line: int, row: Mapping[str, Any], column: str) -> str | None:
    value = row.get(column)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ManifestError(
            path, line, f"column {column!r} must be text, got {type(value).__name__}"
        )
    text = str(value).strip()
    # Text the catalog can store: PostgreSQL refuses NUL, and no database takes a lone
    # surrogate (JSON's "\ud800" escape decodes to one).
    if "\x00" in text:
        raise ManifestError(path, line, f"column {column!r} contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ManifestError(
            path, line, f"column {column!r} is not valid Unicode (a lone surrogate)"
        ) from None
    return text or None


def _check_url(path: Path, line: int, column: str, url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:  # "http://[x": an unclosed IPv6 bracket, a netloc NFKC changes
        raise ManifestError(path, line, f"{column} is not a valid URL: {url!r}") from None
    if parts.scheme.lower() not in _URL_SCHEMES or not parts.netloc:
        raise ManifestError(path, line, f"{column} must be an http(s) URL, got {url!r}")
    return url


def _record(
    manifest: Path, line: int, row: Mapping[str, Any], *, allow_paths: bool
) -> SourceRecord:
    values = {column: _text(manifest, line, row, column) for column in COLUMNS}
    local, image_url, page_url = values["path"], values["image_url"], values["url"]
    if local is None and image_url is None:
        raise ManifestError(manifest, line, "row has neither 'path' nor 'image_url'")
    if image_url is not None:
        _check_url(manifest, line, "image_url", image_url)
    if page_url is not None:
        _check_url(manifest, line, "url", page_url)
    common = {
        "product_id": values["product_id"],
        "label": values["label"],
        "title": values["title"],
        "page_url": page_url,
    }
    if local is None:
        return SourceRecord(path=None, url=image_url, source_url=image_url, **common)
    if not allow_paths:
        raise ManifestError(manifest, line, "local paths are not allowed in this manifest")
    file = _local_file(manifest, line, local)
    return SourceRecord(path=file, url=None, source_url=image_url or file.as_uri(), **common)


def _local_file(manifest: Path, line: int, local: str) -> Path:
    """``local`` as an absolute path, relative to the manifest's folder."""
    try:
        return (manifest.parent / Path(local).expanduser()).resolve()
    except (RuntimeError, OSError) as exc:  # "~nobody/a.jpg" (no such user), a symlink loop
        raise ManifestError(manifest, line, f"path {local!r} cannot be resolved: {exc}") from None
