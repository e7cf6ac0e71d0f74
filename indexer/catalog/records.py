"""The catalog's row types: statuses, frozen dataclasses, ids and small helpers.

Rows come back as frozen dataclasses, so callers keep using them after the
connection is gone and across threads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

CHUNK = 500  # ids per IN (...) clause: well under every backend's parameter limit
_VECTOR_ID_MASK = (1 << 63) - 1

class ItemStatus(StrEnum):
    STORED = "stored"
    EMBEDDED = "embedded"
    INDEXED = "indexed"
    FAILED = "failed"
    DELETED = "deleted"  # searches skip it at once; the index writer removes it, then the row


# What a re-submitted image replaces rather than keeps (its bytes are taken in again).
REPLACEABLE_STATUSES = (ItemStatus.FAILED, ItemStatus.DELETED)


class JobKind(StrEnum):
    INGEST = "ingest"
    RECRAWL = "recrawl"
    REINDEX = "reindex"


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"  # the job itself could not run (see its message)
    SKIPPED = "skipped"  # e.g. a re-index while another one runs


FINISHED_JOB_STATUSES = (JobStatus.DONE, JobStatus.FAILED, JobStatus.SKIPPED)


class EntryKind(StrEnum):
    URL = "url"  # an image to download
    PATH = "path"  # a local image file
    REMOVE = "remove"  # an item the source no longer offers


class EntryState(StrEnum):
    PENDING = "pending"  # to fetch (url, path) or to remove (remove)
    DONE = "done"  # stored: item_id names the item
    FAILED = "failed"  # error says why; permanent says whether a retry may help
    REMOVED = "removed"  # removal entries: the item was deleted
    KEPT = "kept"  # removal entries: the item is still used elsewhere, not deleted


class CatalogError(RuntimeError):
    """The catalog cannot do what was asked (schema mismatch, id collision)."""


def vector_id_for(item_id: str) -> int:
    """faiss id of an item: first 8 bytes of its sha256, big-endian, as a non-negative int64."""
    raw = bytes.fromhex(item_id)
    if len(raw) != 32:
        raise ValueError(f"item id must be a sha256 hex digest, got {item_id!r}")
    return int.from_bytes(raw[:8], "big") & _VECTOR_ID_MASK


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Item:
    """One stored image and its state; a detached copy of its row."""

    id: str
    vector_id: int
    product_id: str | None
    label: str | None
    title: str | None
    source: str | None
    source_url: str | None
    page_url: str | None
    stored_path: str | None  # relative to Settings.home (see indexer.blobs)
    thumbnail_path: str | None
    size_bytes: int | None
    width: int | None
    height: int | None
    status: str
    error: str | None
    model_version: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Job:
    """One ingest, re-crawl or re-index run; its progress is counted from its entries."""

    id: int
    kind: str
    source: str | None
    status: str
    message: str | None
    total: int
    chunks: int
    chunk_size: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_JOB_STATUSES

    @property
    def planned(self) -> bool:
        """False while a crawl job waits for its crawl to list the images."""
        return self.chunks >= 0


@dataclass(frozen=True, slots=True)
class JobEntry:
    """One image of a job's source (or one item a re-crawl found gone)."""

    id: int
    job_id: int
    chunk: int
    kind: str
    location: str
    product_id: str | None
    label: str | None
    title: str | None
    page_url: str | None
    state: str
    item_id: str | None
    replaces: str | None
    error: str | None
    permanent: bool | None
    attempts: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Source:
    id: int
    location: str
    recrawl: bool
    created_at: datetime


ITEM_FIELDS = tuple(f.name for f in dataclasses.fields(Item))  # the items columns' names
_JOB_FIELDS = tuple(f.name for f in dataclasses.fields(Job))
_ENTRY_FIELDS = tuple(f.name for f in dataclasses.fields(JobEntry))
_SOURCE_FIELDS = tuple(f.name for f in dataclasses.fields(Source))


def item_from_row(row: sa.Row) -> Item:
    mapping = row._mapping  # a new view per access: one per row, not per field
    return Item(**{name: mapping[name] for name in ITEM_FIELDS})


def job_from_row(row: sa.Row) -> Job:
    return Job(**{name: row._mapping[name] for name in _JOB_FIELDS})


def entry_from_row(row: sa.Row) -> JobEntry:
    return JobEntry(**{name: row._mapping[name] for name in _ENTRY_FIELDS})


def source_from_row(row: sa.Row) -> Source:
    return Source(**{name: row._mapping[name] for name in _SOURCE_FIELDS})


def check_status(status: str, allowed: type[StrEnum]) -> str:
    try:
        return allowed(status).value
    except ValueError:
        names = ", ".join(s.value for s in allowed)
        raise ValueError(f"unknown status {status!r}; expected one of: {names}") from None


def chunked(values: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
