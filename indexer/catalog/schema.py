"""The catalog's tables (SQLAlchemy Core) and the engine that opens them.

SQLite in the data directory by default, PostgreSQL when ``LOOKALIKE_DATABASE_URL``
says so; the same code serves both. SQLite gets WAL, foreign keys and a busy
timeout on every connection.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from indexer.catalog.records import ItemStatus

SCHEMA_VERSION = 4  # 2: jobs, job_entries, sources; 3: no fetches table, deleted items;
# 4: items indexed by label (exact label filters read the matching ids)
PG_SCHEMA_LOCK = 0x4C6F6F6B  # advisory lock key ("Look") serialising create_all
ITEM_STATUS_CHECK = "status IN ({})".format(", ".join(f"'{s.value}'" for s in ItemStatus))


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
    sa.CheckConstraint(ITEM_STATUS_CHECK, name="ck_items_status"),
    sa.Index("ix_items_status_id", "status", "id"),
    sa.Index("ix_items_product_id", "product_id"),
    sa.Index("ix_items_label", "label"),
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
