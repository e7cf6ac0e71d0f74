"""indexer.catalog.schema: the tables and the engine, on SQLite and a real PostgreSQL."""

from __future__ import annotations

import hashlib
from datetime import UTC

from indexer.catalog import Catalog
from indexer.catalog.records import ITEM_FIELDS
from indexer.catalog.schema import items_table


def add(catalog: Catalog, n: int):
    return catalog.add_item(hashlib.sha256(f"image {n}".encode()).hexdigest(), source="/data")


def test_timestamps_are_utc_aware_on_every_backend(catalog):
    item, _ = add(catalog, 1)
    stored = catalog.get(item.id)
    assert stored.created_at.tzinfo == UTC
    assert stored.created_at == item.created_at


def test_sqlite_default_from_settings(settings):
    with Catalog(settings) as catalog:
        assert settings.catalog_url.startswith("sqlite:///")
        assert (settings.home / "catalog.sqlite3").exists()
        add(catalog, 1)
        with catalog.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1



def test_item_fields_are_the_items_columns_in_order():
    # by_vector_ids (every search's join) builds Items from rows positionally
    assert tuple(column.name for column in items_table.columns) == ITEM_FIELDS
