"""indexer.catalog.migrations: catalogs written by older code open, upgraded, with their rows.

The tables of schema versions 1 and 2 are frozen below, copied from the code that
wrote them (version 2: the catalog before the ``fetches`` queue went), so these
tests keep checking the upgrade of a real old database after the live tables move on.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from indexer.catalog import (
    SCHEMA_VERSION,
    Catalog,
    CatalogError,
    UTCDateTime,
    create_catalog_engine,
    schema_version_table,
    utcnow,
    vector_id_for,
)

# -- the version-2 tables, as indexer/catalog.py defined them --------------------------

_BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
V2 = sa.MetaData()

sa.Table(
    "schema_version", V2,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)  # fmt: skip
sa.Table(
    "items", V2,
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
)  # fmt: skip
sa.Table(
    "fetches", V2,
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
)  # fmt: skip
sa.Table(
    "jobs", V2,
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
)  # fmt: skip
sa.Table(
    "job_entries", V2,
    sa.Column("id", _BIGINT_ID, primary_key=True, autoincrement=True),
    sa.Column(
        "job_id", _BIGINT_ID, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("chunk", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("location", sa.Text, nullable=False),
    sa.Column("product_id", sa.String(512)),
    sa.Column("label", sa.String(512)),
    sa.Column("title", sa.Text),
    sa.Column("page_url", sa.Text),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("item_id", sa.String(64)),
    sa.Column("replaces", sa.String(64)),
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
)  # fmt: skip
sa.Table(
    "sources", V2,
    sa.Column("id", _BIGINT_ID, primary_key=True, autoincrement=True),
    sa.Column("location", sa.Text, nullable=False, unique=True),
    sa.Column("recrawl", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
)  # fmt: skip

V1_TABLES = ("schema_version", "items", "fetches")  # version 1: before jobs existed

# -- rows an old catalog holds ---------------------------------------------------------

GOOD, BAD = "ab" * 32, "cd" * 32
T0 = utcnow() - timedelta(days=3)


def _item(item_id: str, status: str, **fields) -> dict:
    return {
        "id": item_id, "vector_id": vector_id_for(item_id), "product_id": "p1", "label": "shoes",
        "title": "Red shoe", "source": "/data/m.csv", "source_url": "https://img.example/1.jpg",
        "page_url": "https://shop.example/1", "stored_path": None, "thumbnail_path": None,
        "size_bytes": 1234, "width": 64, "height": 48, "status": status, "error": None,
        "model_version": None, "created_at": T0, "updated_at": T0, **fields,
    }  # fmt: skip


def write_old_catalog(url: str, version: int) -> None:
    """A catalog as the version-``version`` code left it: items, fetches, jobs, entries."""
    engine = create_catalog_engine(url, poolclass=sa.pool.NullPool)
    tables = V2.tables
    with engine.begin() as conn:
        names = V1_TABLES if version == 1 else tuple(tables)
        V2.create_all(conn, tables=[tables[name] for name in names])
        conn.execute(tables["schema_version"].insert().values(id=1, version=version,
                                                               updated_at=T0))  # fmt: skip
        conn.execute(tables["items"].insert(), [
            _item(GOOD, "indexed", stored_path="images/ab/x.jpg", model_version="m1"),
            _item(BAD, "failed", error="truncated image data"),
        ])  # fmt: skip
        # Ids come from the backend's own sequences, as the old code's inserts did.
        fetch_id = conn.execute(tables["fetches"].insert().values(
            url="https://img.example/1.jpg", source="/data/m.csv", status="done",
            attempts=1, item_id=GOOD, created_at=T0, updated_at=T0,
        ).returning(tables["fetches"].c.id)).scalar_one()  # fmt: skip
        if version == 1:
            return
        job_id = conn.execute(tables["jobs"].insert().values(
            kind="ingest", source="/data/m.csv", status="done", message=None, total=2,
            chunks=1, chunk_size=64, created_at=T0, updated_at=T0, started_at=T0, finished_at=T0,
        ).returning(tables["jobs"].c.id)).scalar_one()  # fmt: skip
        entry = {"job_id": job_id, "chunk": 0, "kind": "url", "product_id": "p1", "label": None,
                 "title": None, "page_url": None, "replaces": None, "permanent": None,
                 "attempts": 1, "updated_at": T0}  # fmt: skip
        conn.execute(tables["job_entries"].insert(), [
            {**entry, "location": "https://img.example/1.jpg", "state": "done",
             "item_id": GOOD, "fetch_id": fetch_id, "error": None},
            {**entry, "location": "https://img.example/2.jpg", "state": "failed",
             "item_id": None, "fetch_id": None, "error": "HTTP 404", "permanent": True},
        ])  # fmt: skip
        conn.execute(tables["sources"].insert().values(
            location="/data/m.csv", recrawl=True, created_at=T0))  # fmt: skip
    engine.dispose()


def table_names(catalog: Catalog) -> set[str]:
    return set(sa.inspect(catalog.engine).get_table_names())


def test_a_version_2_catalog_is_upgraded_keeping_every_item_job_entry_and_source(catalog_url):
    write_old_catalog(catalog_url, version=2)
    with Catalog.open(catalog_url) as catalog:
        assert catalog.schema_version() == SCHEMA_VERSION == 4
        assert "fetches" not in table_names(catalog)
        columns = {c["name"] for c in sa.inspect(catalog.engine).get_columns("job_entries")}
        assert "fetch_id" not in columns and {"item_id", "replaces"} <= columns
        good, bad = catalog.get(GOOD), catalog.get(BAD)
        assert (good.status, good.model_version, good.stored_path) == (
            "indexed", "m1", "images/ab/x.jpg")  # fmt: skip
        assert (good.title, good.page_url, good.created_at) == (
            "Red shoe", "https://shop.example/1", T0)  # fmt: skip
        assert (bad.status, bad.error) == ("failed", "truncated image data")
        assert catalog.counts() == {
            "stored": 0, "embedded": 0, "indexed": 1, "failed": 1, "deleted": 0,
        }
        (job,) = catalog.jobs()
        assert (job.kind, job.status, job.total, job.finished_at) == ("ingest", "done", 2, T0)
        done, failed = catalog.job_entries(job.id)
        assert (done.location, done.state, done.item_id) == (
            "https://img.example/1.jpg", "done", GOOD)  # fmt: skip
        assert (failed.state, failed.error, failed.permanent) == ("failed", "HTTP 404", True)
        assert catalog.job_failures(job.id) == [("https://img.example/2.jpg", "HTTP 404")]
        assert [s.location for s in catalog.sources()] == ["/data/m.csv"]
        # the upgraded tables take new rows
        new = catalog.create_job("ingest", source="/s", entries=[{"kind": "url",
                                                                  "location": "http://x/1.jpg"}])
        assert new.id > job.id and len(catalog.job_entries(new.id)) == 1
        # Items may be deleted now, and no foreign key of the old fetches holds the row.
        assert catalog.mark_deleted([GOOD]) == 1 and catalog.purge_deleted([GOOD]) == 1
    with Catalog.open(catalog_url) as again:  # opening a current catalog changes nothing
        assert again.schema_version() == 4 and again.get(BAD) is not None


def test_a_version_1_catalog_is_upgraded_through_version_2(catalog_url):
    write_old_catalog(catalog_url, version=1)
    with Catalog.open(catalog_url) as catalog:
        assert catalog.schema_version() == 4
        assert table_names(catalog) == {"schema_version", "items", "jobs", "job_entries",
                                        "sources"}  # fmt: skip
        assert catalog.get(GOOD).status == "indexed" and catalog.get(BAD).status == "failed"
        job = catalog.create_job("ingest", source="/s",
                                 entries=[{"kind": "url", "location": "http://x/1.jpg"}])
        assert catalog.get_job(job.id).total == 1
        catalog.register_source("/s")
        assert [s.location for s in catalog.sources()] == ["/s"]


def label_indexes(catalog: Catalog) -> list[str]:
    return [index["name"] for index in sa.inspect(catalog.engine).get_indexes("items")
            if index["column_names"] == ["label"]]


def test_a_version_3_catalog_gets_its_label_index_and_label_filters_read_it(catalog_url,
                                                                            catalog):
    catalog.add_item(GOOD, source="/x", label="shoes")
    catalog.add_item(BAD, source="/x", label="hats")
    with catalog.engine.begin() as conn:  # as the version-3 code left it
        conn.execute(sa.text("DROP INDEX ix_items_label"))
        conn.execute(schema_version_table.update().values(version=3))
    catalog.close()
    with Catalog.open(catalog_url) as upgraded:
        assert upgraded.schema_version() == 4
        assert label_indexes(upgraded) == ["ix_items_label"]
        assert upgraded.vector_ids_matching(label="shoes").tolist() == [vector_id_for(GOOD)]
    with Catalog.open(catalog_url) as again:  # a second open leaves it as it is
        assert again.schema_version() == 4 and label_indexes(again) == ["ix_items_label"]


def test_reopen_keeps_data_and_schema_version(catalog_url, catalog):
    catalog.add_item(GOOD, source="/x")
    catalog.close()
    with Catalog.open(catalog_url) as reopened:
        assert reopened.get(GOOD) is not None
        assert reopened.schema_version() == SCHEMA_VERSION


def test_a_newer_schema_version_is_refused(catalog_url, catalog):
    with catalog.engine.begin() as conn:
        conn.execute(schema_version_table.update().values(version=SCHEMA_VERSION + 1))
    with pytest.raises(CatalogError, match="schema version"):
        Catalog.open(catalog_url)


def test_a_version_without_a_migration_is_refused(catalog_url, catalog):
    with catalog.engine.begin() as conn:
        conn.execute(schema_version_table.update().values(version=0))
    with pytest.raises(CatalogError, match="no migration from version 0"):
        Catalog.open(catalog_url)
