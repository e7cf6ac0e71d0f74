"""The catalog: every item (one stored image) and its state, and the jobs that took
images in, in SQL.

SQLite in the data directory by default, PostgreSQL when ``LOOKALIKE_DATABASE_URL``
says so; the same SQLAlchemy Core code serves both. One module per table group:

* :mod:`~indexer.catalog.schema`: the tables, the UTC datetime type, engine creation;
* :mod:`~indexer.catalog.migrations`: schema versions and the upgrade steps;
* :mod:`~indexer.catalog.records`: statuses, the frozen row dataclasses, ``vector_id_for``;
* :mod:`~indexer.catalog.items`, :mod:`~indexer.catalog.jobs`,
  :mod:`~indexer.catalog.entries`, :mod:`~indexer.catalog.sources`: the reads and
  writes of each table group, as mixins of :class:`Catalog`.

``vector_id`` is the faiss id of an item: the first 8 bytes of its id, big-endian,
masked to 63 bits (faiss ids are signed 64-bit). Collisions are astronomically
unlikely and are refused by a unique key.
"""

from __future__ import annotations

from indexer.catalog.base import CatalogBase
from indexer.catalog.entries import EntriesMixin
from indexer.catalog.items import ItemsMixin
from indexer.catalog.jobs import JobsMixin
from indexer.catalog.records import (
    FINISHED_JOB_STATUSES,
    REPLACEABLE_STATUSES,
    CatalogError,
    EntryKind,
    EntryState,
    Item,
    ItemStatus,
    Job,
    JobEntry,
    JobKind,
    JobStatus,
    Source,
    utcnow,
    vector_id_for,
)
from indexer.catalog.schema import (
    SCHEMA_VERSION,
    UTCDateTime,
    create_catalog_engine,
    items_table,
    job_entries_table,
    jobs_table,
    metadata,
    schema_version_table,
    sources_table,
)
from indexer.catalog.sources import SourcesMixin


class Catalog(ItemsMixin, JobsMixin, EntriesMixin, SourcesMixin, CatalogBase):
    """Items, jobs, their entries and sources. Open with ``Catalog(settings)`` or
    ``Catalog.open(url)``."""


__all__ = [
    "FINISHED_JOB_STATUSES",
    "REPLACEABLE_STATUSES",
    "SCHEMA_VERSION",
    "Catalog",
    "CatalogError",
    "EntryKind",
    "EntryState",
    "Item",
    "ItemStatus",
    "Job",
    "JobEntry",
    "JobKind",
    "JobStatus",
    "Source",
    "UTCDateTime",
    "create_catalog_engine",
    "items_table",
    "job_entries_table",
    "jobs_table",
    "metadata",
    "schema_version_table",
    "sources_table",
    "utcnow",
    "vector_id_for",
]
