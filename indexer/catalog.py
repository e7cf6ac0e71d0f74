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

Schema changes: ``create_all`` runs on open and ``schema_version`` records the
version of the tables. There is no migration tool yet; a catalog written by a
newer or older schema version is refused with a clear message rather than used.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url

from indexer.config import Settings

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
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


_ITEM_FIELDS = tuple(f.name for f in dataclasses.fields(Item))
_FETCH_FIELDS = tuple(f.name for f in dataclasses.fields(Fetch))


def _item(row: sa.Row) -> Item:
    return Item(**{name: row._mapping[name] for name in _ITEM_FIELDS})


def _fetch(row: sa.Row) -> Fetch:
    return Fetch(**{name: row._mapping[name] for name in _FETCH_FIELDS})


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
            elif found != SCHEMA_VERSION:
                raise CatalogError(
                    f"catalog schema version {found} does not match this code's "
                    f"version {SCHEMA_VERSION}; no migration is available yet"
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
