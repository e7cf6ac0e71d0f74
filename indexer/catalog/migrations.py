"""Schema versions: create the tables on open, upgrade an older catalog step by step.

``create_all`` runs on open and ``schema_version`` records the version of the
tables. An older catalog is upgraded one version at a time (:data:`MIGRATIONS`),
each step in the same transaction as the version bump; a catalog written by a
newer schema version is refused with a clear message rather than used.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from indexer.catalog.records import CatalogError, utcnow
from indexer.catalog.schema import (
    ITEM_STATUS_CHECK,
    PG_SCHEMA_LOCK,
    SCHEMA_VERSION,
    items_table,
    job_entries_table,
    jobs_table,
    metadata,
    schema_version_table,
    sources_table,
)

log = logging.getLogger(__name__)


def _migrate_1_to_2(conn: Connection) -> None:
    """Version 2 adds the jobs, job_entries and sources tables (nothing else changes)."""
    for table in (jobs_table, job_entries_table, sources_table):
        table.create(conn, checkfirst=True)


def _migrate_2_to_3(conn: Connection) -> None:
    """Version 3 drops the ``fetches`` queue (URL rows are job entries now) and lets
    an item be ``deleted`` (searches skip it until the index writer purges it).

    ``job_entries.fetch_id`` pointed at the queue (a plain column, no foreign key);
    it goes too. Items, jobs, entries and sources are kept as they are. A catalog
    upgraded from version 1 gets its job tables from this code, without the column.
    """
    inspector = sa.inspect(conn)
    columns = {column["name"] for column in inspector.get_columns("job_entries")}
    # SQLite drops a column in place from 3.35 on; an older one keeps it, nullable and unread.
    can_drop = conn.dialect.name != "sqlite" or _sqlite_version(conn) >= (3, 35)
    if "fetch_id" in columns and can_drop:
        conn.execute(sa.text("ALTER TABLE job_entries DROP COLUMN fetch_id"))
    if inspector.has_table("fetches"):  # first: its foreign key names items
        conn.execute(sa.text("DROP TABLE fetches"))
    _widen_item_statuses(conn)


def _widen_item_statuses(conn: Connection) -> None:
    """Replace the items' status check with this code's (``deleted`` is new)."""
    if conn.dialect.name != "sqlite":
        conn.execute(sa.text("ALTER TABLE items DROP CONSTRAINT IF EXISTS ck_items_status"))
        conn.execute(sa.text(f"ALTER TABLE items ADD CONSTRAINT ck_items_status "
                             f"CHECK ({ITEM_STATUS_CHECK})"))  # fmt: skip
        return
    # SQLite cannot alter a constraint: rebuild the table (nothing references it now).
    columns = ", ".join(column.name for column in items_table.columns)
    conn.execute(sa.text("ALTER TABLE items RENAME TO items_before_3"))
    for index in items_table.indexes:  # index names are global in SQLite
        conn.execute(sa.text(f"DROP INDEX IF EXISTS {index.name}"))
    items_table.create(conn)
    conn.execute(sa.text(f"INSERT INTO items ({columns}) SELECT {columns} FROM items_before_3"))
    conn.execute(sa.text("DROP TABLE items_before_3"))


def _migrate_3_to_4(conn: Connection) -> None:
    """Version 4 indexes items by label: a label filter reads its items' vector ids.

    ``IF NOT EXISTS``: a SQLite catalog rebuilt by the step to 3 has it already."""
    conn.execute(sa.text("CREATE INDEX IF NOT EXISTS ix_items_label ON items (label)"))


def _sqlite_version(conn: Connection) -> tuple[int, ...]:
    return tuple(conn.dialect.dbapi.sqlite_version_info)


MIGRATIONS: dict[int, Callable[[Connection], None]] = {
    1: _migrate_1_to_2, 2: _migrate_2_to_3, 3: _migrate_3_to_4,
}


def create_schema(conn: Connection, dialect: str, insert_ignore: Callable[..., bool]) -> None:
    """Create missing tables and bring the schema to :data:`SCHEMA_VERSION`, in ``conn``'s
    transaction."""
    if dialect == "postgresql":
        # Two workers starting together would race on CREATE TABLE.
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(PG_SCHEMA_LOCK)))
    metadata.create_all(conn)
    found = conn.execute(
        sa.select(schema_version_table.c.version).where(schema_version_table.c.id == 1)
    ).scalar_one_or_none()
    if found is None:
        insert_ignore(
            conn, schema_version_table, {"id": 1, "version": SCHEMA_VERSION, "updated_at": utcnow()}
        )
    elif found < SCHEMA_VERSION:
        migrate(conn, found)
    elif found != SCHEMA_VERSION:
        raise CatalogError(
            f"catalog schema version {found} does not match this code's "
            f"version {SCHEMA_VERSION}; no migration is available for it"
        )


def migrate(conn: Connection, found: int) -> None:
    """Upgrade an older schema step by step, inside the schema transaction."""
    for version in range(found, SCHEMA_VERSION):
        step = MIGRATIONS.get(version)
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
