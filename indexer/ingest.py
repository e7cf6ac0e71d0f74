"""Ingest: turn a folder, a manifest or one image file into stored catalog items.

For every local image: read at most ``max_image_bytes`` (a huge file is never
loaded into memory), hash it (the item id), skip it if the catalog already has it,
decode it safely, store the original bytes and a thumbnail (content-addressed, see
:mod:`indexer.blobs`), then add the item as ``stored``. Files are written before
the row that points to them, so a crash leaves at worst an orphan file, never a
row without its image. A rejected image is recorded as a ``failed`` item with its
reason; one bad file never stops the rest. URL rows of a manifest are queued as
pending fetches for the downloader.

Running the same source again adds nothing: ids are content hashes and every
write is idempotent. Decoding runs on a small thread pool (Pillow releases the
GIL while decoding); all catalog writes happen on the calling thread.
"""

from __future__ import annotations

import logging
import os
import sys
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tqdm import tqdm

from indexer.blobs import BlobStore
from indexer.catalog import Catalog, FetchStatus, ItemStatus
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

log = logging.getLogger(__name__)


@dataclass
class IngestReport:
    """What one ingest run did. ``failed`` lists ``(source_url, reason)`` per rejected record."""

    added: int = 0
    duplicates: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    pending_urls: int = 0

    @property
    def total(self) -> int:
        return self.added + self.duplicates + len(self.failed) + self.pending_urls


@dataclass(frozen=True, slots=True)
class _Outcome:
    """The result of preparing one local record off the main thread."""

    record: SourceRecord
    kind: Literal["stored", "duplicate", "failed"]
    item_id: str | None = None
    size_bytes: int | None = None
    reason: str | None = None
    stored_path: str | None = None
    thumbnail_path: str | None = None
    width: int | None = None
    height: int | None = None


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


def ingest(
    source_path: Path,
    settings: Settings,
    catalog: Catalog | None = None,
    *,
    images: BlobStore | None = None,
    thumbnails: BlobStore | None = None,
    progress: bool = False,
    workers: int | None = None,
) -> IngestReport:
    """Ingest a folder, manifest or image file. Collaborators default to those of ``settings``."""
    source_path = Path(source_path).resolve()
    records = records_for(source_path)
    own_catalog = catalog is None
    catalog = catalog or Catalog(settings)
    try:
        return ingest_records(
            records,
            settings,
            source=str(source_path),
            catalog=catalog,
            images=images,
            thumbnails=thumbnails,
            progress=progress,
            workers=workers,
        )
    finally:
        if own_catalog:
            catalog.close()


def ingest_records(
    records: Iterable[SourceRecord],
    settings: Settings,
    *,
    source: str,
    catalog: Catalog,
    images: BlobStore | None = None,
    thumbnails: BlobStore | None = None,
    progress: bool = False,
    workers: int | None = None,
) -> IngestReport:
    """Ingest records from any source; ``source`` names it in the catalog (keep it stable)."""
    records = list(records)
    images = images or BlobStore.for_images(settings)
    thumbnails = thumbnails or BlobStore.for_thumbnails(settings)
    workers = workers or min(4, os.cpu_count() or 1)
    report = IngestReport()
    bar = tqdm(total=len(records), disable=not progress, file=sys.stderr, unit="img", desc="ingest")

    def prepare(record: SourceRecord) -> _Outcome:
        return _prepare(record, settings, catalog, images, thumbnails)

    def finish(outcome: _Outcome) -> None:
        _record_outcome(outcome, source, catalog, report)
        bar.update()
        bar.set_postfix(
            added=report.added, dup=report.duplicates, failed=len(report.failed), refresh=False
        )

    local: list[SourceRecord] = []
    for record in records:
        if record.url is not None and record.path is None:
            fetch, _ = catalog.add_fetch(
                record.url,
                source=source,
                product_id=record.product_id,
                label=record.label,
                title=record.title,
                page_url=record.page_url,
            )
            if fetch.status == FetchStatus.PENDING:
                report.pending_urls += 1
            elif fetch.status == FetchStatus.DONE:  # fetched on an earlier run
                report.duplicates += 1
            else:  # failed on an earlier run; the fetcher owns retries
                report.failed.append((record.url, fetch.error or "fetch failed"))
            bar.update()
        else:
            local.append(record)

    try:
        if workers <= 1:
            for record in local:
                finish(prepare(record))
        else:
            with ThreadPoolExecutor(workers, thread_name_prefix="ingest") as pool:
                in_flight: deque[Future[_Outcome]] = deque()
                for record in local:
                    in_flight.append(pool.submit(prepare, record))
                    if len(in_flight) >= 2 * workers:  # bounded memory: a few images at a time
                        finish(in_flight.popleft().result())
                while in_flight:
                    finish(in_flight.popleft().result())
    finally:
        bar.close()
    log.info(
        "ingested %s: %d added, %d duplicates, %d failed, %d URLs pending",
        source,
        report.added,
        report.duplicates,
        len(report.failed),
        report.pending_urls,
    )
    return report


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


def _stored_file_present(images: BlobStore, stored_path: str | None) -> bool:
    if not stored_path:
        return False
    try:
        return images.resolve(stored_path).is_file()
    except ValueError:  # catalogued under another data directory layout
        return False


def _prepare(
    record: SourceRecord,
    settings: Settings,
    catalog: Catalog,
    images: BlobStore,
    thumbnails: BlobStore,
) -> _Outcome:
    """Read, hash, decode and store one local file. Runs on a worker thread."""
    assert record.path is not None
    try:
        data = read_limited(record.path, settings.max_image_bytes)
    except FileTooLarge as too_large:
        try:  # hash in chunks: the id is still the content's, but memory stays flat
            item_id = sha256_file(record.path)
        except OSError as error:
            return _Outcome(record, "failed", reason=f"unreadable file: {error.strerror or error}")
        return _Outcome(record, "failed", item_id, too_large.size, reason=too_large.reason)
    except OSError as error:
        return _Outcome(record, "failed", reason=f"unreadable file: {error.strerror or error}")

    item_id = content_id(data)
    size = len(data)
    existing = catalog.get(item_id)
    if existing is not None and existing.status != ItemStatus.FAILED:
        if _stored_file_present(images, existing.stored_path):
            return _Outcome(record, "duplicate", item_id, size)
        log.warning("item %s is catalogued but its file is missing; storing it again", item_id)
    try:
        loaded = load_image(
            data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels
        )
        thumb = make_thumbnail(loaded.image, settings.thumbnail_size)
    except ImageRejected as rejected:
        return _Outcome(record, "failed", item_id, size, reason=rejected.reason)
    except Exception as error:  # a decoder bug must not stop the run; record it instead
        log.exception("unexpected error decoding %s", record.source_url)
        return _Outcome(record, "failed", item_id, size, reason=f"internal error: {error!r}")
    images.put(item_id, data, loaded.ext)
    thumbnails.put(item_id, thumb, THUMBNAIL_EXT)
    return _Outcome(
        record,
        "stored",
        item_id,
        size,
        stored_path=images.relative(item_id, loaded.ext),
        thumbnail_path=thumbnails.relative(item_id, THUMBNAIL_EXT),
        width=loaded.width,
        height=loaded.height,
    )


def _record_outcome(outcome: _Outcome, source: str, catalog: Catalog, report: IngestReport) -> None:
    """Write one outcome to the catalog and the report. Runs on the calling thread."""
    record = outcome.record
    origin = record.source_url or str(record.path)
    meta = {
        "product_id": record.product_id,
        "label": record.label,
        "title": record.title,
        "page_url": record.page_url,
    }
    if outcome.kind == "duplicate":
        report.duplicates += 1
        return
    if outcome.kind == "failed":
        reason = outcome.reason or "unknown error"
        report.failed.append((origin, reason))
        log.warning("rejected %s: %s", origin, reason)
        if outcome.item_id is not None:  # unreadable files have no content id to record
            catalog.record_failure(
                outcome.item_id,
                source=source,
                source_url=origin,
                reason=reason,
                size_bytes=outcome.size_bytes,
                **meta,
            )
        return
    assert outcome.item_id is not None
    _, created = catalog.add_item(
        outcome.item_id,
        source=source,
        source_url=origin,
        stored_path=outcome.stored_path,
        thumbnail_path=outcome.thumbnail_path,
        size_bytes=outcome.size_bytes,
        width=outcome.width,
        height=outcome.height,
        **meta,
    )
    if created:
        report.added += 1
    else:
        report.duplicates += 1
