"""Content-addressed file store for original images and thumbnails.

A blob's name is its item id (sha256 hex), fanned out over two directory levels
(``root/ab/cd/abcd….jpg``) so no directory grows past a few thousand entries even
with tens of millions of items. Because the name is the content, ``put`` is
idempotent: a file that exists already is left alone, and two writers racing on
the same id write the same bytes (each through its own temp file, then rename).

Paths kept in the catalog are *relative to the data directory* (``Settings.home``),
e.g. ``images/ab/cd/abcd….jpg``, so the whole directory can be moved or mounted
elsewhere (a shared volume for API and workers). :meth:`BlobStore.relative` makes
such a path and :meth:`BlobStore.resolve` turns one back into a file path,
refusing anything that points outside the store.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from indexer.config import Settings
from indexer.fsutil import atomic_write_bytes

log = logging.getLogger(__name__)

_ITEM_ID = re.compile(r"[0-9a-f]{64}")
_EXT = re.compile(r"[a-z0-9]{1,8}")


def _check_id(item_id: str) -> str:
    if not _ITEM_ID.fullmatch(item_id):
        raise ValueError(f"item id must be 64 lower-case hex characters, got {item_id!r}")
    return item_id


def _check_ext(ext: str) -> str:
    ext = ext.lower().lstrip(".")
    if not _EXT.fullmatch(ext):
        raise ValueError(f"extension must be 1-8 letters or digits, got {ext!r}")
    return ext


class BlobStore:
    """Files named by item id under ``root``; paths for the catalog are relative to ``home``."""

    def __init__(self, root: Path, *, home: Path | None = None) -> None:
        self.root = Path(root).resolve()
        self.home = Path(home).resolve() if home is not None else self.root
        if not self.root.is_relative_to(self.home):
            raise ValueError(f"store root {self.root} is not inside home {self.home}")

    @classmethod
    def for_images(cls, settings: Settings) -> BlobStore:
        return cls(settings.images_dir, home=settings.home)

    @classmethod
    def for_thumbnails(cls, settings: Settings) -> BlobStore:
        return cls(settings.thumbnails_dir, home=settings.home)

    def key(self, item_id: str, ext: str) -> PurePosixPath:
        """``ab/cd/<id>.<ext>``: the blob's place inside the store."""
        _check_id(item_id)
        return PurePosixPath(item_id[:2], item_id[2:4], f"{item_id}.{_check_ext(ext)}")

    def path_for(self, item_id: str, ext: str) -> Path:
        """Absolute path where the blob lives (whether or not it exists)."""
        return self.root.joinpath(*self.key(item_id, ext).parts)

    def relative(self, item_id: str, ext: str) -> str:
        """The blob's path relative to ``home``, POSIX-style: what the catalog stores."""
        return self.path_for(item_id, ext).relative_to(self.home).as_posix()

    def resolve(self, stored_path: str) -> Path:
        """Turn a catalog path (relative to ``home``) back into an absolute path in this store."""
        path = (self.home / stored_path).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"{stored_path!r} is not inside the store {self.root}")
        return path

    def exists(self, item_id: str, ext: str) -> bool:
        return self.path_for(item_id, ext).is_file()

    def put(self, item_id: str, data: bytes, ext: str) -> Path:
        """Store ``data`` durably under its id; an existing blob is left untouched."""
        path = self.path_for(item_id, ext)
        if path.is_file():
            return path
        atomic_write_bytes(path, data)
        log.debug("stored %s (%d bytes)", path, len(data))
        return path

    def open(self, item_id: str, ext: str) -> BinaryIO:
        """Open the blob for reading; raises FileNotFoundError when absent."""
        return open(self.path_for(item_id, ext), "rb")

    def read(self, item_id: str, ext: str) -> bytes:
        return self.path_for(item_id, ext).read_bytes()

    def delete(self, item_id: str, ext: str | None = None) -> bool:
        """Remove the blob (any extension when ``ext`` is None). True if something was removed."""
        if ext is not None:
            paths = [self.path_for(item_id, ext)]
        else:
            directory = self.path_for(item_id, "x").parent
            paths = list(directory.glob(f"{_check_id(item_id)}.*")) if directory.is_dir() else []
        removed = False
        for path in paths:
            try:
                path.unlink()
                removed = True
            except FileNotFoundError:
                pass
        return removed
