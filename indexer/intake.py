"""Intake: the one path by which an image enters the catalog.

Every image, whoever takes it in (a worker's fetch stage, ``lookalike ingest`` in
process, an upload to the HTTP API, which becomes a job like any other), goes
through :func:`take_in` for one job entry:

1. read the bytes: download a URL (:class:`~indexer.sources.fetch.Fetcher`, with its
   byte limit) or read a local file, at most ``max_image_bytes`` of it; a file over
   the limit is refused before it is read and hashed in chunks, so memory stays flat;
2. hash them (the item id) and skip an item the catalog already has, unless its
   stored file went missing, in which case it is stored again;
3. decode them safely (:func:`~indexer.images.load_image`) and make a thumbnail;
4. store the original and the thumbnail, content-addressed (:mod:`indexer.blobs`);
5. add the item, or record the failure with its reason.

Files are written before the row that points to them, so a crash leaves at worst
an orphan file, never a row without its image. Everything is idempotent: ids are
content hashes and every write is an insert-or-keep.

Steps 1-4 (:func:`prepare`) touch no catalog row and may run on several threads
(Pillow releases the GIL while decoding); step 5 (:func:`record`) runs on the
calling thread, in order, so that of two files with the same bytes the first one
listed names the item. :func:`take_in_all` does both for many entries, a few
images in memory at a time.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from indexer.blobs import BlobStore
from indexer.catalog import REPLACEABLE_STATUSES, Catalog, EntryKind, EntryState, JobEntry
from indexer.config import Settings
from indexer.fsutil import sha256_file
from indexer.images import (
    THUMBNAIL_EXT,
    ImageRejected,
    content_id,
    load_image,
    make_thumbnail,
    size_rejection,
)
from indexer.sources import IMAGE_EXTENSIONS, SourceRecord, is_manifest, iter_folder, read_manifest
from indexer.sources.fetch import Fetcher, FetchError

log = logging.getLogger(__name__)

Fatal = tuple[type[BaseException], ...]


@dataclass
class Intake:
    """What taking images in needs; build it once per process (the fetcher is reusable)."""

    settings: Settings
    catalog: Catalog
    fetcher: Fetcher
    images: BlobStore
    thumbnails: BlobStore

    @classmethod
    def from_settings(
        cls, settings: Settings, catalog: Catalog, fetcher: Fetcher | None = None
    ) -> Intake:
        return cls(
            settings,
            catalog,
            fetcher or Fetcher.from_settings(settings),
            BlobStore.for_images(settings),
            BlobStore.for_thumbnails(settings),
        )


@dataclass(frozen=True, slots=True)
class Taken:
    """What became of one entry: ``state`` done (``item_id`` names the item) or failed."""

    state: str
    item_id: str | None = None
    error: str | None = None
    permanent: bool | None = None  # failed: whether a retry cannot help
    created: bool = False  # done: a new item, not one the catalog had already


@dataclass(frozen=True, slots=True)
class Prepared:
    """One entry read, decoded and stored off the calling thread; not yet in the catalog.

    ``kind``: ``stored`` (files written), ``present`` (the catalog has it, with its
    file), ``rejected`` (bytes that are not a usable image: a failed item is
    recorded) or ``unread`` (no bytes: nothing to record but the entry's failure).
    """

    entry: JobEntry
    kind: str
    origin: str
    item_id: str | None = None
    size_bytes: int | None = None
    reason: str | None = None
    permanent: bool | None = None
    stored_path: str | None = None
    thumbnail_path: str | None = None
    width: int | None = None
    height: int | None = None


class FileTooLarge(ImageRejected):
    """A file over the byte limit, refused before its bytes are read."""

    def __init__(self, size: int, max_bytes: int) -> None:
        rejected = size_rejection(size, max_bytes)
        super().__init__(rejected.reason if rejected else f"file too large: {size} bytes")
        self.size = size


def read_limited(path: Path, max_bytes: int) -> bytes:
    """Read a file, refusing (without reading it) one larger than ``max_bytes``."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > max_bytes:
            raise FileTooLarge(size, max_bytes)
        data = handle.read(max_bytes + 1)  # the file may have grown since fstat
    if len(data) > max_bytes:
        raise FileTooLarge(max(size, len(data)), max_bytes)
    return data


def records_for(source_path: Path) -> list[SourceRecord]:
    """The records of a folder, a manifest, or a single image file (validated up front)."""
    source_path = Path(source_path)
    if source_path.is_dir():
        return list(iter_folder(source_path))
    if source_path.is_file() and is_manifest(source_path):
        return read_manifest(source_path)
    if source_path.is_file() and source_path.suffix.lower() in IMAGE_EXTENSIONS:
        path = source_path.resolve()
        return [SourceRecord(path=path, url=None, product_id=path.stem, source_url=path.as_uri())]
    raise ValueError(
        f"{source_path}: not a folder, a manifest (.csv, .jsonl, .ndjson) or an image file"
    )


def take_in(intake: Intake, entry: JobEntry, source: str | None, *, fatal: Fatal = ()) -> Taken:
    """Take one entry in, start to end, on this thread."""
    return record(intake, prepare(intake, entry, fatal=fatal), source)


def take_in_all(
    intake: Intake,
    entries: Iterable[JobEntry],
    source: str | None,
    *,
    threads: int = 1,
    fatal: Fatal = (),
) -> Iterator[tuple[JobEntry, Taken]]:
    """Take entries in, in order; with ``threads`` > 1, a few of them prepared at once.

    At most ``2 * threads`` images are in memory at a time. Exceptions of the
    ``fatal`` types (e.g. a task's soft time limit) reach the caller.
    """
    if threads <= 1:
        for entry in entries:
            yield entry, take_in(intake, entry, source, fatal=fatal)
        return
    with ThreadPoolExecutor(threads, thread_name_prefix="intake") as pool:
        in_flight: deque[Future[Prepared]] = deque()
        for entry in entries:
            in_flight.append(pool.submit(prepare, intake, entry, fatal=fatal))
            if len(in_flight) >= 2 * threads:  # bounded memory: a few images at a time
                done = in_flight.popleft().result()
                yield done.entry, record(intake, done, source)
        while in_flight:
            done = in_flight.popleft().result()
            yield done.entry, record(intake, done, source)


def prepare(intake: Intake, entry: JobEntry, *, fatal: Fatal = ()) -> Prepared:
    """Read, hash, check, decode and store one entry's image; no catalog writes."""
    remote = entry.kind == EntryKind.URL
    origin = entry.location if remote else Path(entry.location).as_uri()
    try:
        if remote:
            data = intake.fetcher.fetch(entry.location).data
        else:
            data = read_limited(Path(entry.location), intake.settings.max_image_bytes)
    except fatal:
        raise
    except FetchError as error:
        return Prepared(entry, "unread", origin, reason=error.reason, permanent=error.permanent)
    except FileTooLarge as too_large:
        return _too_large(entry, origin, too_large)
    except OSError as error:
        return Prepared(entry, "unread", origin, reason=_unreadable(error), permanent=True)
    except Exception as error:  # a fetcher bug must not stop the chunk; record it
        log.exception("unexpected error taking in %s", entry.location)
        return Prepared(entry, "unread", origin, reason=f"internal error: {error!r}")
    return _decode_and_store(intake, entry, origin, data, fatal)


def _too_large(entry: JobEntry, origin: str, too_large: FileTooLarge) -> Prepared:
    try:  # hash in chunks: the id is still the content's, but memory stays flat
        item_id = sha256_file(Path(entry.location))
    except OSError as error:
        return Prepared(entry, "unread", origin, reason=_unreadable(error), permanent=True)
    return Prepared(
        entry, "rejected", origin, item_id, too_large.size, too_large.reason, permanent=True
    )


def _unreadable(error: OSError) -> str:
    return f"unreadable file: {error.strerror or error}"


def _decode_and_store(
    intake: Intake, entry: JobEntry, origin: str, data: bytes, fatal: Fatal
) -> Prepared:
    settings = intake.settings
    item_id = content_id(data)
    size = len(data)
    existing = intake.catalog.get(item_id)
    if existing is not None and existing.status not in REPLACEABLE_STATUSES:
        if stored_file_present(intake.images, existing.stored_path):
            return Prepared(entry, "present", origin, item_id, size)
        log.warning("item %s is catalogued but its file is missing; storing it again", item_id)
    try:
        loaded = load_image(
            data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels
        )
        thumbnail = make_thumbnail(loaded.image, settings.thumbnail_size)
    except fatal:
        raise
    except ImageRejected as rejected:
        return Prepared(entry, "rejected", origin, item_id, size, rejected.reason, permanent=True)
    except Exception as error:  # a decoder bug must not stop the run; record it instead
        log.exception("unexpected error decoding %s", entry.location)
        reason = f"internal error: {error!r}"
        return Prepared(entry, "rejected", origin, item_id, size, reason, permanent=False)
    intake.images.put(item_id, data, loaded.ext)
    intake.thumbnails.put(item_id, thumbnail, THUMBNAIL_EXT)
    return Prepared(
        entry,
        "stored",
        origin,
        item_id,
        size,
        stored_path=intake.images.relative(item_id, loaded.ext),
        thumbnail_path=intake.thumbnails.relative(item_id, THUMBNAIL_EXT),
        width=loaded.width,
        height=loaded.height,
    )


def record(intake: Intake, prepared: Prepared, source: str | None) -> Taken:
    """Write a prepared entry's item (or its failure) to the catalog."""
    entry = prepared.entry
    if prepared.kind == "present":
        return Taken(EntryState.DONE, prepared.item_id)
    meta = {
        "product_id": entry.product_id,
        "label": entry.label,
        "title": entry.title,
        "page_url": entry.page_url,
    }
    if prepared.kind in ("rejected", "unread"):
        reason = prepared.reason or "unknown error"
        if prepared.kind == "rejected":
            assert prepared.item_id is not None
            intake.catalog.record_failure(
                prepared.item_id,
                source=source,
                source_url=prepared.origin,
                reason=reason,
                size_bytes=prepared.size_bytes,
                **meta,
            )
        return Taken(EntryState.FAILED, error=reason, permanent=prepared.permanent)
    assert prepared.item_id is not None
    _, created = intake.catalog.add_item(
        prepared.item_id,
        source=source,
        source_url=prepared.origin,
        stored_path=prepared.stored_path,
        thumbnail_path=prepared.thumbnail_path,
        size_bytes=prepared.size_bytes,
        width=prepared.width,
        height=prepared.height,
        **meta,
    )
    return Taken(EntryState.DONE, prepared.item_id, created=created)


def stored_file_present(images: BlobStore, stored_path: str | None) -> bool:
    """Whether a catalogued item's original is where its row says."""
    if not stored_path:
        return False
    try:
        return images.resolve(stored_path).is_file()
    except ValueError:  # catalogued under another data directory layout
        return False
