"""The catalog: every item (one stored image) and its state, in SQL.

SQLite in the data directory by default, PostgreSQL when ``LOOKALIKE_DATABASE_URL``
says so; the same SQLAlchemy Core code serves both. Rows come back as frozen
dataclasses, so callers keep using them after the connection is gone and across
threads.

Item lifecycle (``items.status``)::

    stored ──embed──▶ embedded ──index──▶ indexed
       │                  ▲                  │
       └────── failed     └── new model ─────┘  (re-embedded under model_version)

An item id is the sha256 of the image bytes, so writes are idempotent: adding an
id that exists is a no-op (``INSERT … ON CONFLICT DO NOTHING``), which also makes
concurrent workers safe without locks. ``vector_id`` is the faiss id of the item:
the first 8 bytes of the id, big-endian, masked to 63 bits (faiss ids are signed
64-bit). Collisions are astronomically unlikely and are refused by a unique key.

Jobs (``jobs``, ``job_entries``, ``sources``) record background and in-process
ingest runs and re-indexes: one entry per image a source offers (its URL or path,
its state, the item it became, the reason it failed), so progress is counted from
rows, never from counters a duplicate task could bump twice. See :mod:`indexer.jobs`.

Schema changes: ``create_all`` runs on open and ``schema_version`` records the
version of the tables. An older catalog is upgraded step by step (``_MIGRATIONS``:
each step runs in the same transaction as the version bump); a catalog written by
a newer schema version is refused with a clear message rather than used.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url

from indexer.config import Settings

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: jobs, job_entries, sources
_CHUNK = 500  # ids per IN (...) clause: well under every backend's parameter limit
_VECTOR_ID_MASK = (1 << 63) - 1
_PG_SCHEMA_LOCK = 0x4C6F6F6B  # advisory lock key ("Look") serialising create_all


class ItemStatus(StrEnum):
    STORED = "stored"
    EMBEDDED = "embedded"
    INDEXED = "indexed"
    FAILED = "failed"


class FetchStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


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


class UTCDateTime(sa.types.TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the catalog; use datetime.now(UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER

metadata = sa.MetaData()

schema_version_table = sa.Table(
    "schema_version",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),  # always 1: a single row
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

items_table = sa.Table(
    "items",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("vector_id", sa.BigInteger, nullable=False, unique=True),
    sa.Column("product_id", sa.String(512)),
    sa.Column("label", sa.String(512)),
    sa.Column("title", sa.Text),
    sa.Column("source", sa.Text),
    sa.Column("source_url", sa.Text),
    sa.Column("page_url", sa.Text),
    sa.Column("stored_path", sa.Text),
    sa.Column("thumbnail_path", sa.Text),
    sa.Column("size_bytes", sa.BigInteger),
    sa.Column("width", sa.Integer),
    sa.Column("height", sa.Integer),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("model_version", sa.String(256)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.CheckConstraint(
        "status IN ('stored', 'embedded', 'indexed', 'failed')", name="ck_items_status"
    ),
    sa.Index("ix_items_status_id", "status", "id"),
    sa.Index("ix_items_product_id", "product_id"),
)

fetches_table = sa.Table(
    "fetches",
    metadata,
    sa.Column("id", _BIGINT_ID, primary_key=True, autoincrement=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("product_id", sa.String(512)),
    sa.Column("label", sa.String(512)),
    sa.Column("title", sa.Text),
    sa.Column("page_url", sa.Text),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("item_id", sa.String(64), sa.ForeignKey("items.id", ondelete="SET NULL")),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("source", "url", name="uq_fetches_source_url"),
    sa.CheckConstraint("status IN ('pending', 'done', 'failed')", name="ck_fetches_status"),
    sa.Index("ix_fetches_status_id", "status", "id"),
)


jobs_table = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", _BIGINT_ID, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("source", sa.Text),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("message", sa.Text),
    sa.Column("total", sa.Integer, nullable=False, default=0),
    sa.Column("chunks", sa.Integer, nullable=False, default=0),
    sa.Column("chunk_size", sa.Integer, nullable=False, default=1),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("started_at", UTCDateTime),
    sa.Column("finished_at", UTCDateTime),
    sa.CheckConstraint(
        "status IN ('queued', 'running', 'done', 'failed', 'skipped')", name="ck_jobs_status"
    ),
    sa.CheckConstraint("kind IN ('ingest', 'recrawl', 'reindex')", name="ck_jobs_kind"),
    sa.Index("ix_jobs_status_id", "status", "id"),
    sa.Index("ix_jobs_source_id", "source", "id"),
)

job_entries_table = sa.Table(
    "job_entries",
    metadata,
    sa.Column("id", _BIGINT_ID, primary_key=True, autoincrement=True),
    sa.Column(
        "job_id", _BIGINT_ID, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("chunk", sa.Integer, nullable=False),  # -1: removals, not fetched
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("location", sa.Text, nullable=False),  # URL or absolute path
    sa.Column("product_id", sa.String(512)),
    sa.Column("label", sa.String(512)),
    sa.Column("title", sa.Text),
    sa.Column("page_url", sa.Text),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("item_id", sa.String(64)),  # no foreign key: removed items keep their history
    sa.Column("replaces", sa.String(64)),  # the item this location held before (re-crawl)
    sa.Column("fetch_id", _BIGINT_ID),
    sa.Column("error", sa.Text),
    sa.Column("permanent", sa.Boolean),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.CheckConstraint("kind IN ('url', 'path', 'remove')", name="ck_job_entries_kind"),
    sa.CheckConstraint(
        "state IN ('pending', 'done', 'failed', 'removed', 'kept')", name="ck_job_entries_state"
    ),
    sa.Index("ix_job_entries_job_chunk", "job_id", "chunk", "id"),
    sa.Index("ix_job_entries_job_state", "job_id", "state"),
    sa.Index("ix_job_entries_item", "item_id"),
)

sources_table = sa.Table(
    "sources",
    metadata,
    sa.Column("id", _BIGINT_ID, primary_key=True, autoincrement=True),
    sa.Column("location", sa.Text, nullable=False, unique=True),
    sa.Column("recrawl", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
)


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
class Fetch:
    """A manifest row with an image URL, waiting for (or done with) its download."""

    id: int
    url: str
    source: str
    product_id: str | None
    label: str | None
    title: str | None
    page_url: str | None
    status: str
    error: str | None
    attempts: int
    item_id: str | None
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
    fetch_id: int | None
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


_ITEM_FIELDS = tuple(f.name for f in dataclasses.fields(Item))
_FETCH_FIELDS = tuple(f.name for f in dataclasses.fields(Fetch))
_JOB_FIELDS = tuple(f.name for f in dataclasses.fields(Job))
_ENTRY_FIELDS = tuple(f.name for f in dataclasses.fields(JobEntry))
_SOURCE_FIELDS = tuple(f.name for f in dataclasses.fields(Source))


def _item(row: sa.Row) -> Item:
    return Item(**{name: row._mapping[name] for name in _ITEM_FIELDS})


def _fetch(row: sa.Row) -> Fetch:
    return Fetch(**{name: row._mapping[name] for name in _FETCH_FIELDS})


def _job(row: sa.Row) -> Job:
    return Job(**{name: row._mapping[name] for name in _JOB_FIELDS})


def _entry(row: sa.Row) -> JobEntry:
    return JobEntry(**{name: row._mapping[name] for name in _ENTRY_FIELDS})


def _source(row: sa.Row) -> Source:
    return Source(**{name: row._mapping[name] for name in _SOURCE_FIELDS})


def _check_status(status: str, allowed: type[StrEnum]) -> str:
    try:
        return allowed(status).value
    except ValueError:
        names = ", ".join(s.value for s in allowed)
        raise ValueError(f"unknown status {status!r}; expected one of: {names}") from None


def _chunks(values: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable enough in WAL mode
        cursor.execute("PRAGMA busy_timeout=30000")
    finally:
        cursor.close()


def create_catalog_engine(url: str, **engine_kwargs: Any) -> Engine:
    """An engine for ``url``; SQLite gets its directory created, WAL and foreign keys."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs.setdefault("connect_args", {}).setdefault("timeout", 30)
        engine = sa.create_engine(parsed, **engine_kwargs)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine_kwargs.setdefault("pool_pre_ping", True)
    return sa.create_engine(parsed, **engine_kwargs)


class Catalog:
    """Items and pending fetches. Open with ``Catalog(settings)`` or ``Catalog.open(url)``."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        url: str | None = None,
        engine: Engine | None = None,
    ) -> None:
        if engine is None:
            if url is None:
                if settings is None:
                    raise ValueError("Catalog needs settings, a url or an engine")
                url = settings.catalog_url
            engine = create_catalog_engine(url)
        self.engine = engine
        self.dialect = engine.dialect.name
        self._create_schema()

    @classmethod
    def open(cls, url: str, **engine_kwargs: Any) -> Catalog:
        return cls(engine=create_catalog_engine(url, **engine_kwargs))

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Catalog({self.engine.url.render_as_string(hide_password=True)!r})"

    # -- schema ---------------------------------------------------------------

    def _create_schema(self) -> None:
        try:
            self._create_schema_once()
        except sa.exc.OperationalError as exc:
            # SQLite: another process created the tables between our check and CREATE.
            if "already exists" not in str(exc):
                raise
            self._create_schema_once()

    def _create_schema_once(self) -> None:
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                # Two workers starting together would race on CREATE TABLE.
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_SCHEMA_LOCK)))
            metadata.create_all(conn)
            found = conn.execute(
                sa.select(schema_version_table.c.version).where(schema_version_table.c.id == 1)
            ).scalar_one_or_none()
            if found is None:
                self._insert_ignore(
                    conn,
                    schema_version_table,
                    {"id": 1, "version": SCHEMA_VERSION, "updated_at": utcnow()},
                )
            elif found < SCHEMA_VERSION:
                self._migrate(conn, found)
            elif found != SCHEMA_VERSION:
                raise CatalogError(
                    f"catalog schema version {found} does not match this code's "
                    f"version {SCHEMA_VERSION}; no migration is available for it"
                )

    def _migrate(self, conn: Connection, found: int) -> None:
        """Upgrade an older schema step by step, inside the schema transaction."""
        for version in range(found, SCHEMA_VERSION):
            step = _MIGRATIONS.get(version)
            if step is None:
                raise CatalogError(
                    f"catalog schema version {found} is too old for this code's version "
                    f"{SCHEMA_VERSION}; no migration from version {version}"
                )
            step(conn)
            log.info("catalog schema migrated from version %d to %d", version, version + 1)
        conn.execute(
            schema_version_table.update()
            .where(schema_version_table.c.id == 1)
            .values(version=SCHEMA_VERSION, updated_at=utcnow())
        )

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(schema_version_table.c.version)).scalar_one()

    def _insert_ignore(self, conn: Connection, table: sa.Table, values: dict[str, Any]) -> bool:
        """Insert a row unless it clashes with a unique key; True if it was inserted."""
        if self.dialect == "postgresql":
            stmt = postgresql.insert(table).values(values).on_conflict_do_nothing()
        elif self.dialect == "sqlite":
            stmt = sqlite.insert(table).values(values).on_conflict_do_nothing()
        else:
            try:
                with conn.begin_nested():
                    conn.execute(table.insert().values(values))
                return True
            except sa.exc.IntegrityError:
                return False
        # RETURNING tells reliably whether a row went in (rowcount is -1 on some drivers).
        key = list(table.primary_key.columns)
        return conn.execute(stmt.returning(*key)).first() is not None

    # -- items: writes ----------------------------------------------------------

    def add_item(
        self,
        item_id: str,
        *,
        source: str | None = None,
        source_url: str | None = None,
        stored_path: str | None = None,
        thumbnail_path: str | None = None,
        size_bytes: int | None = None,
        width: int | None = None,
        height: int | None = None,
        product_id: str | None = None,
        label: str | None = None,
        title: str | None = None,
        page_url: str | None = None,
    ) -> tuple[Item, bool]:
        """Add a stored item. Returns ``(item, created)``; an existing good item is kept as is.

        A previous *failed* row for the same id is replaced (the bytes decode now,
        e.g. after a limit was raised) and counts as created.
        """
        now = utcnow()
        values = {
            "id": item_id,
            "vector_id": vector_id_for(item_id),
            "product_id": product_id,
            "label": label,
            "title": title,
            "source": source,
            "source_url": source_url,
            "page_url": page_url,
            "stored_path": stored_path,
            "thumbnail_path": thumbnail_path,
            "size_bytes": size_bytes,
            "width": width,
            "height": height,
            "status": ItemStatus.STORED.value,
            "error": None,
            "model_version": None,
            "created_at": now,
            "updated_at": now,
        }
        items = items_table
        with self.engine.begin() as conn:
            created = self._insert_ignore(conn, items, values)
            if not created:
                retry = {k: v for k, v in values.items() if k not in ("id", "created_at")}
                created = (
                    conn.execute(
                        items.update()
                        .where(items.c.id == item_id, items.c.status == ItemStatus.FAILED.value)
                        .values(retry)
                    ).rowcount
                    == 1
                )
            row = conn.execute(items.select().where(items.c.id == item_id)).one_or_none()
        if row is None:
            raise CatalogError(
                f"item {item_id} clashes with another item's vector id {values['vector_id']}"
            )
        return _item(row), created

    def record_failure(
        self,
        item_id: str,
        *,
        source: str | None = None,
        source_url: str | None = None,
        reason: str,
        size_bytes: int | None = None,
        product_id: str | None = None,
        label: str | None = None,
        title: str | None = None,
        page_url: str | None = None,
    ) -> Item:
        """Record bytes that could not be used. A good item with the same id is never downgraded."""
        now = utcnow()
        values = {
            "id": item_id,
            "vector_id": vector_id_for(item_id),
            "product_id": product_id,
            "label": label,
            "title": title,
            "source": source,
            "source_url": source_url,
            "page_url": page_url,
            "size_bytes": size_bytes,
            "status": ItemStatus.FAILED.value,
            "error": reason,
            "created_at": now,
            "updated_at": now,
        }
        items = items_table
        with self.engine.begin() as conn:
            if not self._insert_ignore(conn, items, values):
                conn.execute(
                    items.update()
                    .where(items.c.id == item_id, items.c.status == ItemStatus.FAILED.value)
                    .values(source=source, source_url=source_url, error=reason, updated_at=now)
                )
            row = conn.execute(items.select().where(items.c.id == item_id)).one_or_none()
        if row is None:
            raise CatalogError(f"item {item_id} clashes with another item's vector id")
        return _item(row)

    def mark_embedded(self, item_ids: Sequence[str], model_version: str) -> int:
        """Items now have a vector from ``model_version``. Failed items are left alone."""
        return self._set_status(
            item_ids,
            {"status": ItemStatus.EMBEDDED.value, "model_version": model_version, "error": None},
            only_from=(ItemStatus.STORED, ItemStatus.EMBEDDED, ItemStatus.INDEXED),
        )

    def mark_indexed(self, item_ids: Sequence[str]) -> int:
        """Embedded items are now in the live index."""
        return self._set_status(
            item_ids,
            {"status": ItemStatus.INDEXED.value},
            only_from=(ItemStatus.EMBEDDED, ItemStatus.INDEXED),
        )

    def mark_failed(self, item_id: str, reason: str) -> bool:
        """A later stage found the item unusable (e.g. it no longer decodes)."""
        return (
            self._set_status(
                [item_id], {"status": ItemStatus.FAILED.value, "error": reason}, only_from=None
            )
            == 1
        )

    def _set_status(
        self,
        item_ids: Sequence[str],
        values: dict[str, Any],
        only_from: Iterable[ItemStatus] | None,
    ) -> int:
        ids = list(dict.fromkeys(item_ids))
        values = {**values, "updated_at": utcnow()}
        changed = 0
        with self.engine.begin() as conn:
            for chunk in _chunks(ids):
                stmt = items_table.update().where(items_table.c.id.in_(chunk)).values(values)
                if only_from is not None:
                    stmt = stmt.where(items_table.c.status.in_([s.value for s in only_from]))
                changed += conn.execute(stmt).rowcount
        return changed

    def delete(self, item_id: str) -> bool:
        """Remove the item's row (its files are the caller's: see indexer.blobs)."""
        with self.engine.begin() as conn:
            return (
                conn.execute(items_table.delete().where(items_table.c.id == item_id)).rowcount == 1
            )

    # -- items: reads ---------------------------------------------------------

    def get(self, item_id: str) -> Item | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                items_table.select().where(items_table.c.id == item_id)
            ).one_or_none()
        return _item(row) if row is not None else None

    def get_many(self, item_ids: Iterable[str]) -> dict[str, Item]:
        """Items by id; ids that are not in the catalog are simply absent from the result."""
        ids = list(dict.fromkeys(item_ids))
        found: dict[str, Item] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(ids):
                for row in conn.execute(items_table.select().where(items_table.c.id.in_(chunk))):
                    found[row.id] = _item(row)
        return found

    def by_vector_ids(self, vector_ids: Iterable[int]) -> dict[int, Item]:
        """Items for faiss search results, keyed by vector id."""
        ids = list(dict.fromkeys(int(v) for v in vector_ids))
        found: dict[int, Item] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(ids):
                stmt = items_table.select().where(items_table.c.vector_id.in_(chunk))
                for row in conn.execute(stmt):
                    found[row.vector_id] = _item(row)
        return found

    def items_with_status(
        self, status: str, limit: int | None = None, after_id: str | None = None
    ) -> list[Item]:
        """One page of items in a status, ordered by id; pass the last id as ``after_id``."""
        status = _check_status(status, ItemStatus)
        return self._page(items_table.c.status == status, limit, after_id)

    def iter_items_with_status(self, status: str, page_size: int = 1000) -> Iterator[Item]:
        """Every item in a status, fetched page by page (keyset paging, no OFFSET)."""
        after: str | None = None
        while page := self.items_with_status(status, limit=page_size, after_id=after):
            yield from page
            after = page[-1].id

    def items_needing_embedding(
        self, model_version: str, limit: int | None = None, after_id: str | None = None
    ) -> list[Item]:
        """Stored items, and embedded/indexed ones whose vector came from another model."""
        c = items_table.c
        condition = sa.or_(
            c.status == ItemStatus.STORED.value,
            sa.and_(
                c.status.in_([ItemStatus.EMBEDDED.value, ItemStatus.INDEXED.value]),
                sa.or_(c.model_version.is_(None), c.model_version != model_version),
            ),
        )
        return self._page(condition, limit, after_id)

    def _page(
        self, condition: sa.ColumnElement[bool], limit: int | None, after_id: str | None
    ) -> list[Item]:
        stmt = items_table.select().where(condition).order_by(items_table.c.id)
        if after_id is not None:
            stmt = stmt.where(items_table.c.id > after_id)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self.engine.connect() as conn:
            return [_item(row) for row in conn.execute(stmt)]

    def counts(self) -> dict[str, int]:
        """Number of items per status (every status present, zero included)."""
        result = {status.value: 0 for status in ItemStatus}
        stmt = sa.select(items_table.c.status, sa.func.count()).group_by(items_table.c.status)
        with self.engine.connect() as conn:
            for status, count in conn.execute(stmt):
                result[status] = count
        return result

    def failures(self, limit: int = 100) -> list[Item]:
        """Most recent failures first; ``id``, ``source_url`` and ``error`` say what and why."""
        stmt = (
            items_table.select()
            .where(items_table.c.status == ItemStatus.FAILED.value)
            .order_by(items_table.c.updated_at.desc(), items_table.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_item(row) for row in conn.execute(stmt)]

    # -- fetches ----------------------------------------------------------------

    def add_fetch(
        self,
        url: str,
        *,
        source: str,
        product_id: str | None = None,
        label: str | None = None,
        title: str | None = None,
        page_url: str | None = None,
    ) -> tuple[Fetch, bool]:
        """Queue an image URL from ``source``; the same (source, url) is queued once."""
        now = utcnow()
        values = {
            "url": url,
            "source": source,
            "product_id": product_id,
            "label": label,
            "title": title,
            "page_url": page_url,
            "status": FetchStatus.PENDING.value,
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        }
        f = fetches_table.c
        with self.engine.begin() as conn:
            created = self._insert_ignore(conn, fetches_table, values)
            row = conn.execute(fetches_table.select().where(f.source == source, f.url == url)).one()
        return _fetch(row), created

    def get_fetch(self, fetch_id: int) -> Fetch | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                fetches_table.select().where(fetches_table.c.id == fetch_id)
            ).one_or_none()
        return _fetch(row) if row is not None else None

    def pending_fetches(self, limit: int | None = None, after_id: int | None = None) -> list[Fetch]:
        """Queued URLs in insertion order; page with ``after_id``."""
        f = fetches_table.c
        stmt = fetches_table.select().where(f.status == FetchStatus.PENDING.value).order_by(f.id)
        if after_id is not None:
            stmt = stmt.where(f.id > after_id)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self.engine.connect() as conn:
            return [_fetch(row) for row in conn.execute(stmt)]

    def mark_fetch_done(self, fetch_id: int, item_id: str) -> None:
        self._update_fetch(fetch_id, status=FetchStatus.DONE.value, item_id=item_id, error=None)

    def mark_fetch_failed(self, fetch_id: int, reason: str) -> None:
        self._update_fetch(fetch_id, status=FetchStatus.FAILED.value, error=reason)

    def _update_fetch(self, fetch_id: int, **values: Any) -> None:
        f = fetches_table.c
        with self.engine.begin() as conn:
            conn.execute(
                fetches_table.update()
                .where(f.id == fetch_id)
                .values(**values, attempts=f.attempts + 1, updated_at=utcnow())
            )

    def fetch_counts(self) -> dict[str, int]:
        result = {status.value: 0 for status in FetchStatus}
        f = fetches_table.c
        with self.engine.connect() as conn:
            for status, count in conn.execute(
                sa.select(f.status, sa.func.count()).group_by(f.status)
            ):
                result[status] = count
        return result

    # -- jobs -------------------------------------------------------------------

    def create_job(
        self,
        kind: str,
        *,
        source: str | None = None,
        entries: Sequence[dict[str, Any]] = (),
        removals: Sequence[dict[str, Any]] = (),
        chunk_size: int = 64,
        status: str = JobStatus.QUEUED,
        message: str | None = None,
        planned: bool = True,
    ) -> Job:
        """A new job with its entries, in one transaction.

        ``planned=False``: the entries come later, from :meth:`plan_job` (a crawl
        finds them); until then the job has ``chunks == -1``.

        ``entries``: dicts with ``kind`` (url or path), ``location`` and optionally
        ``product_id``, ``label``, ``title``, ``page_url``, ``replaces``, ``fetch_id``;
        they are numbered into chunks of ``chunk_size`` in the order given.
        ``removals``: dicts with ``location`` and ``item_id`` of items the source no
        longer offers (chunk -1, pending until the index writer removes them).
        """
        kind = _check_status(kind, JobKind)
        status = _check_status(status, JobStatus)
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        now = utcnow()
        with self.engine.begin() as conn:
            job_id = conn.execute(
                jobs_table.insert()
                .values(
                    kind=kind,
                    source=source,
                    status=status,
                    message=message,
                    total=len(entries),
                    chunks=-(-len(entries) // chunk_size) if planned else -1,
                    chunk_size=chunk_size,
                    created_at=now,
                    updated_at=now,
                    started_at=None,
                    finished_at=now if status in FINISHED_JOB_STATUSES else None,
                )
                .returning(jobs_table.c.id)
            ).scalar_one()
            rows = []
            for position, entry in enumerate(entries):
                entry_kind = _check_status(entry["kind"], EntryKind)
                if entry_kind == EntryKind.REMOVE:
                    raise ValueError("removals go in removals=, not entries=")
                rows.append(
                    _entry_row(job_id, position // chunk_size, entry_kind, entry, now)
                )
            for removal in removals:
                rows.append(_entry_row(job_id, -1, EntryKind.REMOVE.value, removal, now))
            for chunk in _chunks(rows, 1000):
                conn.execute(job_entries_table.insert(), list(chunk))
            row = conn.execute(jobs_table.select().where(jobs_table.c.id == job_id)).one()
        return _job(row)

    def plan_job(
        self,
        job_id: int,
        entries: Sequence[dict[str, Any]],
        removals: Sequence[dict[str, Any]] = (),
        message: str | None = None,
    ) -> bool:
        """Give an unplanned job its entries; False if it was planned already (by another run).

        The job row is claimed first (``chunks`` from -1 to the count), in the same
        transaction as the inserts, so two runs planning at once add entries once.
        """
        now = utcnow()
        c = jobs_table.c
        with self.engine.begin() as conn:
            size = conn.execute(sa.select(c.chunk_size).where(c.id == job_id)).scalar_one()
            claimed = conn.execute(
                jobs_table.update()
                .where(c.id == job_id, c.chunks == -1)
                .values(
                    total=len(entries),
                    chunks=-(-len(entries) // size),
                    message=message,
                    updated_at=now,
                )
            ).rowcount
            if claimed != 1:
                return False
            rows = [
                _entry_row(job_id, position // size, _check_status(e["kind"], EntryKind), e, now)
                for position, e in enumerate(entries)
            ]
            rows += [_entry_row(job_id, -1, EntryKind.REMOVE.value, r, now) for r in removals]
            for chunk in _chunks(rows, 1000):
                conn.execute(job_entries_table.insert(), list(chunk))
        return True

    def get_job(self, job_id: int) -> Job | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                jobs_table.select().where(jobs_table.c.id == job_id)
            ).one_or_none()
        return _job(row) if row is not None else None

    def jobs(
        self,
        *,
        limit: int | None = 20,
        statuses: Iterable[str] | None = None,
        kind: str | None = None,
        source: str | None = None,
    ) -> list[Job]:
        """Jobs, newest first."""
        c = jobs_table.c
        stmt = jobs_table.select().order_by(c.id.desc())
        if statuses is not None:
            stmt = stmt.where(c.status.in_([_check_status(s, JobStatus) for s in statuses]))
        if kind is not None:
            stmt = stmt.where(c.kind == _check_status(kind, JobKind))
        if source is not None:
            stmt = stmt.where(c.source == source)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self.engine.connect() as conn:
            return [_job(row) for row in conn.execute(stmt)]

    def set_job_status(
        self,
        job_id: int,
        status: str,
        *,
        message: str | None = None,
        only_from: Iterable[str] | None = None,
    ) -> bool:
        """Move a job to ``status`` (only from ``only_from`` when given); True if it moved."""
        status = _check_status(status, JobStatus)
        now = utcnow()
        c = jobs_table.c
        values: dict[str, Any] = {"status": status, "updated_at": now}
        if message is not None:
            values["message"] = message
        if status == JobStatus.RUNNING:
            values["started_at"] = sa.func.coalesce(c.started_at, now)
            values["finished_at"] = None
        elif status in FINISHED_JOB_STATUSES:
            values["finished_at"] = now
        stmt = jobs_table.update().where(c.id == job_id).values(values)
        if only_from is not None:
            stmt = stmt.where(c.status.in_([_check_status(s, JobStatus) for s in only_from]))
        with self.engine.begin() as conn:
            return conn.execute(stmt).rowcount == 1

    def touch_job(self, job_id: int, message: str | None = None) -> None:
        """Record progress (the sweeper re-queues jobs that show none for a while)."""
        values: dict[str, Any] = {"updated_at": utcnow()}
        if message is not None:
            values["message"] = message
        with self.engine.begin() as conn:
            conn.execute(jobs_table.update().where(jobs_table.c.id == job_id).values(values))

    def job_entries(
        self,
        job_id: int,
        *,
        chunk: int | None = None,
        states: Iterable[str] | None = None,
        kinds: Iterable[str] | None = None,
    ) -> list[JobEntry]:
        """A job's entries in order, optionally one chunk's, in some states or kinds."""
        e = job_entries_table.c
        stmt = job_entries_table.select().where(e.job_id == job_id).order_by(e.id)
        if chunk is not None:
            stmt = stmt.where(e.chunk == chunk)
        if states is not None:
            stmt = stmt.where(e.state.in_([_check_status(s, EntryState) for s in states]))
        if kinds is not None:
            stmt = stmt.where(e.kind.in_([_check_status(k, EntryKind) for k in kinds]))
        with self.engine.connect() as conn:
            return [_entry(row) for row in conn.execute(stmt)]

    def job_chunks(self, job_id: int, states: Iterable[str]) -> list[int]:
        """Chunks (ascending) holding at least one fetch entry in one of ``states``."""
        e = job_entries_table.c
        stmt = (
            sa.select(e.chunk)
            .where(
                e.job_id == job_id,
                e.chunk >= 0,
                e.state.in_([_check_status(s, EntryState) for s in states]),
            )
            .distinct()
            .order_by(e.chunk)
        )
        with self.engine.connect() as conn:
            return [int(chunk) for chunk in conn.execute(stmt).scalars()]

    def finish_entry(
        self,
        entry_id: int,
        state: str,
        *,
        item_id: str | None = None,
        error: str | None = None,
        permanent: bool | None = None,
        removal: dict[str, Any] | None = None,
    ) -> None:
        """Record an entry's outcome, and a removal it implies, in one transaction.

        Only a pending entry changes, so a duplicate delivery that finishes second
        cannot add the same removal twice.
        """
        state = _check_status(state, EntryState)
        now = utcnow()
        e = job_entries_table.c
        with self.engine.begin() as conn:
            row = conn.execute(
                job_entries_table.update()
                .where(e.id == entry_id, e.state == EntryState.PENDING.value)
                .values(
                    state=state,
                    item_id=item_id,
                    error=error,
                    permanent=permanent,
                    attempts=e.attempts + 1,
                    updated_at=now,
                )
                .returning(e.job_id)
            ).first()
            if row is None:
                return
            if removal is not None:
                conn.execute(
                    job_entries_table.insert().values(
                        _entry_row(row.job_id, -1, EntryKind.REMOVE.value, removal, now)
                    )
                )
            conn.execute(
                jobs_table.update().where(jobs_table.c.id == row.job_id).values(updated_at=now)
            )

    def set_entry_states(self, entry_ids: Sequence[int], state: str) -> int:
        state = _check_status(state, EntryState)
        now = utcnow()
        changed = 0
        with self.engine.begin() as conn:
            for chunk in _chunks(list(entry_ids)):
                changed += conn.execute(
                    job_entries_table.update()
                    .where(job_entries_table.c.id.in_(chunk))
                    .values(state=state, updated_at=now)
                ).rowcount
        return changed

    def reset_failed_entries(self, job_id: int) -> int:
        """Failed fetches of a job become pending again (the job runs again); how many."""
        now = utcnow()
        e = job_entries_table.c
        with self.engine.begin() as conn:
            count = conn.execute(
                job_entries_table.update()
                .where(
                    e.job_id == job_id,
                    e.state == EntryState.FAILED.value,
                    e.kind.in_([EntryKind.URL.value, EntryKind.PATH.value]),
                )
                .values(state=EntryState.PENDING.value, error=None, permanent=None, updated_at=now)
            ).rowcount
            if count:
                conn.execute(
                    jobs_table.update()
                    .where(jobs_table.c.id == job_id)
                    .values(status=JobStatus.QUEUED.value, finished_at=None, updated_at=now)
                )
        return count

    def job_items(self, job_id: int, chunk: int | None = None) -> list[Item]:
        """The catalog items a job's (or one chunk's) done entries became, each once."""
        e = job_entries_table.c
        where = [e.job_id == job_id, e.state == EntryState.DONE.value, e.chunk >= 0]
        if chunk is not None:
            where.append(e.chunk == chunk)
        ids = sa.select(e.item_id).where(*where).scalar_subquery()
        stmt = items_table.select().where(items_table.c.id.in_(ids)).order_by(items_table.c.id)
        with self.engine.connect() as conn:
            return [_item(row) for row in conn.execute(stmt)]

    def job_chunks_with_items(
        self, job_id: int, statuses: Iterable[str], idle_for: timedelta | None = None
    ) -> list[int]:
        """Chunks (ascending) whose done entries include an item in one of ``statuses``.

        With ``idle_for``: only chunks none of whose entries changed for that long.
        """
        e = job_entries_table.c
        with_items = (
            sa.select(e.chunk)
            .join(items_table, items_table.c.id == e.item_id)
            .where(
                e.job_id == job_id,
                e.chunk >= 0,
                e.state == EntryState.DONE.value,
                items_table.c.status.in_([_check_status(s, ItemStatus) for s in statuses]),
            )
            .distinct()
        )
        if idle_for is None:
            stmt = with_items.order_by(e.chunk)
        else:
            stmt = (
                sa.select(e.chunk)
                .where(e.job_id == job_id, e.chunk.in_(with_items.scalar_subquery()))
                .group_by(e.chunk)
                .having(sa.func.max(e.updated_at) <= utcnow() - idle_for)
                .order_by(e.chunk)
            )
        with self.engine.connect() as conn:
            return [int(chunk) for chunk in conn.execute(stmt).scalars()]

    def touch_chunks(self, job_id: int, chunks: Sequence[int]) -> None:
        """Mark chunks as just looked at (the sweeper's clock; states do not change)."""
        if not chunks:
            return
        e = job_entries_table.c
        with self.engine.begin() as conn:
            conn.execute(
                job_entries_table.update()
                .where(e.job_id == job_id, e.chunk.in_(list(chunks)))
                .values(updated_at=utcnow())
            )

    def job_counts(self, job_id: int) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
        """``(fetch entries by state, removal entries by state, items by status)``.

        Items are those the job's done entries became, counted once each.
        """
        e = job_entries_table.c
        fetches = {state.value: 0 for state in (EntryState.PENDING, EntryState.DONE,
                                                EntryState.FAILED)}
        removals = {state.value: 0 for state in (EntryState.PENDING, EntryState.REMOVED,
                                                 EntryState.KEPT)}
        items = {status.value: 0 for status in ItemStatus}
        is_removal = e.kind == EntryKind.REMOVE.value
        by_state = (
            sa.select(is_removal.label("removal"), e.state, sa.func.count())
            .where(e.job_id == job_id)
            .group_by(is_removal, e.state)
        )
        item_ids = (
            sa.select(e.item_id)
            .where(e.job_id == job_id, e.state == EntryState.DONE.value, sa.not_(is_removal))
            .scalar_subquery()
        )
        by_status = (
            sa.select(items_table.c.status, sa.func.count())
            .where(items_table.c.id.in_(item_ids))
            .group_by(items_table.c.status)
        )
        with self.engine.connect() as conn:
            for removal, state, count in conn.execute(by_state):
                target = removals if removal else fetches
                target[state] = target.get(state, 0) + count
            for status, count in conn.execute(by_status):
                items[status] = count
        return fetches, removals, items

    def job_failures(self, job_id: int, limit: int | None = None) -> list[tuple[str, str]]:
        """``(location, reason)`` of failed fetches, then of items that failed later."""
        e = job_entries_table.c
        failed = (
            sa.select(e.location, e.error)
            .where(e.job_id == job_id, e.state == EntryState.FAILED.value)
            .order_by(e.id)
        )
        later = (
            sa.select(e.location, items_table.c.error)
            .join(items_table, items_table.c.id == e.item_id)
            .where(
                e.job_id == job_id,
                e.state == EntryState.DONE.value,
                e.kind != EntryKind.REMOVE.value,
                items_table.c.status == ItemStatus.FAILED.value,
            )
            .order_by(e.id)
        )
        result: list[tuple[str, str]] = []
        with self.engine.connect() as conn:
            for stmt in (failed, later):
                if limit is not None:
                    if len(result) >= limit:
                        break
                    stmt = stmt.limit(limit - len(result))
                result.extend((loc, error or "unknown error") for loc, error in conn.execute(stmt))
        return result

    def source_history(self, source: str, before_job_id: int | None = None) -> list[JobEntry]:
        """Every entry of earlier jobs of ``source``, oldest first (re-crawl baselines)."""
        e, j = job_entries_table.c, jobs_table.c
        stmt = (
            job_entries_table.select()
            .join(jobs_table, jobs_table.c.id == e.job_id)
            .where(j.source == source)
            .order_by(e.id)
        )
        if before_job_id is not None:
            stmt = stmt.where(e.job_id < before_job_id)
        with self.engine.connect() as conn:
            return [_entry(row) for row in conn.execute(stmt)]

    def item_used_elsewhere(self, item_id: str, job_id: int, source: str | None) -> bool:
        """Whether another location of this job, or another source, still offers the item."""
        e, j = job_entries_table.c, jobs_table.c
        stmt = (
            sa.select(e.id)
            .join(jobs_table, j.id == e.job_id)
            .where(
                e.item_id == item_id,
                e.state == EntryState.DONE.value,
                e.kind != EntryKind.REMOVE.value,
                sa.or_(e.job_id == job_id, j.source.is_distinct_from(source)),
            )
            .limit(1)
        )
        with self.engine.connect() as conn:
            return conn.execute(stmt).first() is not None

    def stalled_jobs(self, idle_for: timedelta) -> list[Job]:
        """Unfinished jobs without any recorded progress for ``idle_for``."""
        c = jobs_table.c
        stmt = (
            jobs_table.select()
            .where(
                c.status.in_([JobStatus.QUEUED.value, JobStatus.RUNNING.value]),
                c.updated_at <= utcnow() - idle_for,
            )
            .order_by(c.id)
        )
        with self.engine.connect() as conn:
            return [_job(row) for row in conn.execute(stmt)]

    # -- sources ----------------------------------------------------------------

    def register_source(self, location: str, *, recrawl: bool = True) -> Source:
        """Remember a source for scheduled re-crawls; registering again updates ``recrawl``."""
        s = sources_table.c
        with self.engine.begin() as conn:
            values = {"location": location, "recrawl": recrawl, "created_at": utcnow()}
            if not self._insert_ignore(conn, sources_table, values):
                conn.execute(
                    sources_table.update().where(s.location == location).values(recrawl=recrawl)
                )
            row = conn.execute(sources_table.select().where(s.location == location)).one()
        return _source(row)

    def sources(self, *, recrawl_only: bool = False) -> list[Source]:
        stmt = sources_table.select().order_by(sources_table.c.id)
        if recrawl_only:
            stmt = stmt.where(sources_table.c.recrawl.is_(True))
        with self.engine.connect() as conn:
            return [_source(row) for row in conn.execute(stmt)]

    def add_fetches(self, source: str, records: Sequence[dict[str, Any]]) -> dict[str, int]:
        """Queue many URLs of ``source`` at once (existing ones kept); ``{url: fetch id}``."""
        now = utcnow()
        f = fetches_table.c
        urls = list(dict.fromkeys(r["url"] for r in records))
        by_url = {r["url"]: r for r in records}
        found: dict[str, int] = {}
        with self.engine.begin() as conn:
            for chunk in _chunks(urls):
                for url, fetch_id in conn.execute(
                    sa.select(f.url, f.id).where(f.source == source, f.url.in_(chunk))
                ):
                    found[url] = fetch_id
            missing = [
                {
                    "url": url,
                    "source": source,
                    "product_id": by_url[url].get("product_id"),
                    "label": by_url[url].get("label"),
                    "title": by_url[url].get("title"),
                    "page_url": by_url[url].get("page_url"),
                    "status": FetchStatus.PENDING.value,
                    "attempts": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for url in urls
                if url not in found
            ]
            for row in missing:  # one by one: another process may be adding the same URL
                self._insert_ignore(conn, fetches_table, row)
            for chunk in _chunks([r["url"] for r in missing]):
                for url, fetch_id in conn.execute(
                    sa.select(f.url, f.id).where(f.source == source, f.url.in_(chunk))
                ):
                    found[url] = fetch_id
        return found


def _entry_row(
    job_id: int, chunk: int, kind: str, entry: dict[str, Any], now: datetime
) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "chunk": chunk,
        "kind": kind,
        "location": entry["location"],
        "product_id": entry.get("product_id"),
        "label": entry.get("label"),
        "title": entry.get("title"),
        "page_url": entry.get("page_url"),
        "state": EntryState.PENDING.value,
        "item_id": entry.get("item_id"),
        "replaces": entry.get("replaces"),
        "fetch_id": entry.get("fetch_id"),
        "error": None,
        "permanent": None,
        "attempts": 0,
        "updated_at": now,
    }


def _migrate_1_to_2(conn: Connection) -> None:
    """Version 2 adds the jobs, job_entries and sources tables (nothing else changes)."""
    for table in (jobs_table, job_entries_table, sources_table):
        table.create(conn, checkfirst=True)


_MIGRATIONS = {1: _migrate_1_to_2}
