"""A folder of images as a source: flat, or one sub-folder per product or class.

Layout conventions (the CUB-200 / Stanford Online Products style):

* ``root/<label>/<file>``: ``label`` is the immediate parent folder's name and, by
  default, the ``product_id`` too (one sub-folder per product or class). Deeper
  nesting works the same: the *immediate* parent names the label.
* ``root/<file>``: no label; the ``product_id`` is the file's stem.

Which files are offered: every non-hidden file whose extension looks like an
image (:data:`IMAGE_EXTENSIONS`), *including* formats the loader refuses (EPS,
PSD, TIFF, HEIC, …) and whatever bytes hide behind a ``.jpg`` name. The loader
decides, and a refusal is recorded in the catalog with its reason, so a user
sees why their ``.eps`` files are missing instead of them vanishing. Files that
are plainly not images (``.txt``, ``.csv``, ``.json``, ``.md``, ``.DS_Store``,
…) are skipped and only counted in the log. Hidden files and folders (name
starting with ``.``) are skipped; the walk is sorted, so runs are repeatable.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from indexer.sources.records import SourceRecord

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    (
        ".jpg .jpeg .jpe .jfif .png .apng .webp .gif .bmp .dib .tif .tiff .eps .ps .psd"
        " .heic .heif .avif .jp2 .j2k .jxl .ico .svg .tga .pcx .ppm .pgm .pbm .pnm .qoi"
    ).split()
)


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def iter_folder(
    root: Path, *, product_id_from: Literal["folder", "stem"] = "folder"
) -> Iterator[SourceRecord]:
    """Yield a record per image-like file under ``root``, in sorted path order.

    ``product_id_from="stem"`` makes every file its own product even inside
    label folders (for class-labelled datasets whose files are distinct products).
    """
    if product_id_from not in ("folder", "stem"):
        raise ValueError(f"product_id_from must be 'folder' or 'stem', got {product_id_from!r}")
    root = Path(root).resolve()
    if not root.is_dir():
        raise NotADirectoryError(f"not a folder: {root}")
    skipped = 0
    for directory, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
        here = Path(directory)
        for name in sorted(filenames):
            path = here / name
            if _is_hidden(name) or not path.is_file():
                continue
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                skipped += 1
                log.debug("skipping non-image file %s", path)
                continue
            yield _record(root, path, product_id_from)
    if skipped:
        log.info("skipped %d non-image files under %s", skipped, root)


def _record(root: Path, path: Path, product_id_from: str) -> SourceRecord:
    if path.parent == root:
        label = None
        product_id = path.stem
    else:
        label = path.parent.name
        product_id = label if product_id_from == "folder" else path.stem
    return SourceRecord(
        path=path,
        url=None,
        product_id=product_id,
        label=label,
        title=None,
        source_url=path.as_uri(),
    )
